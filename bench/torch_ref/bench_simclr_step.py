"""PyTorch baseline for bench/ssl/bench_simclr_step.cpp: one plain SimCLR training step written in
PyTorch on the same batch shape, timed the same way (one warm-up step, then steps between two
synchronisations, median of the rounds): the encoder (torchvision's ResNet with the F-F-128 MLP
head) over both views in one batch (global BatchNorm), normalised rows, NT-Xent over the 2N rows
(the similarity matrix with its diagonal masked, cross-entropy against each row's partner), the
backward, and LARS in SimCLR's form (trust ratio per tensor, one-dimensional tensors excluded from
it and from weight decay), written with torch ops over the parameter list.

    python3 bench/torch_ref/bench_simclr_step.py [--device cpu|cuda|all] [--quick]
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench_moco_step import make_encoder
from timing import STEP_PRECISIONS, amp, channels_last, run_benchmark, seconds_per_call


def nt_xent(z, temperature):
    rows = z.shape[0]
    n = rows // 2
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    partner = torch.cat([torch.arange(n, rows), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, partner)


@torch.no_grad()
def lars_step(params, buffers, lr, momentum=0.9, weight_decay=1e-6, eta=0.001):
    for p, v in zip(params, buffers):
        g = p.grad
        if p.ndim > 1:
            g = g.add(p, alpha=weight_decay)
            w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
            trust = torch.where((w_norm > 0) & (g_norm > 0), eta * w_norm / g_norm, torch.ones_like(w_norm))
            g = g * trust
        v.mul_(momentum).add_(g, alpha=lr)
        p.sub_(v)


def bench_device(device, quick):
    arch, small_stem, batch, size = ("resnet18", True, 32, 32) if quick else ("resnet50", False, 128, 224)
    repeats = 10 if device.type == "cuda" else 1
    torch.manual_seed(0)
    encoder = channels_last(make_encoder(arch, 128, True, small_stem).to(device))
    params = [p for p in encoder.parameters()]
    buffers = [torch.zeros_like(p) for p in params]
    view1 = channels_last(torch.randn(batch, 3, size, size, device=device))
    view2 = channels_last(torch.randn(batch, 3, size, size, device=device))
    last = {}

    def step():
        with amp(device):  # --precision bf16: autocast
            z = F.normalize(encoder(channels_last(torch.cat([view1, view2]))), dim=1)
            loss = nt_xent(z.float(), 0.2)  # the logits and the loss in f32
        encoder.zero_grad()
        loss.backward()
        lars_step(params, buffers, 0.3)
        last["loss"] = loss.item()

    seconds = seconds_per_call(device, repeats, step)
    print(f"{str(device):<6} {arch:<9} {'small-stem ' if small_stem else ''}mlp {size:>4}px batch {batch:>3} "
          f"(1 groups) plain SimCLR + LARS    : {1e3 * seconds:8.1f} ms/step {batch / seconds:8.1f} img/s  "
          f"(loss {last['loss']:.3f})")


if __name__ == "__main__":
    run_benchmark(bench_device, STEP_PRECISIONS)
