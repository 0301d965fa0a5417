"""PyTorch baseline for bench/ssl/bench_moco_step.cpp: one MoCo v2 training step of the reference's
model code (moco/builder.py's computation, written out here for one process) on the same batch
shape, timed the same way (one warm-up step, then steps between two synchronisations, median of 5
rounds).

The reference runs 4 GPUs of 32 images with per-GPU BatchNorm and shuffles the keys across them.
On one device that is: each encoder runs on the 4 chunks of 32 separately (BatchNorm statistics
per chunk), and the keys are permuted before f_k and un-permuted after. A second line times the
same step with one forward over the whole batch (BatchNorm over 128), the cheapest PyTorch can do.

    python3 bench/torch_ref/bench_moco_step.py [--device cpu|cuda|all] [--quick] [--precision fp32|tf32|bf16] [--batch N]
"""

import copy
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from timing import STEP_PRECISIONS, amp, channels_last, run_benchmark, seconds_per_call

BATCH = 0  # --batch N (0: the case's own batch)


def make_encoder(arch, dim, mlp, small_stem):
    encoder = torchvision.models.__dict__[arch](num_classes=dim)
    if small_stem:
        encoder.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        encoder.maxpool = nn.Identity()
    if mlp:
        features = encoder.fc.weight.shape[1]
        encoder.fc = nn.Sequential(nn.Linear(features, features), nn.ReLU(), encoder.fc)
    return encoder


class MoCoStep(nn.Module):
    def __init__(self, arch, dim, K, m, T, mlp, groups, small_stem):
        super().__init__()
        self.K, self.m, self.T, self.groups = K, m, T, groups
        self.encoder_q = make_encoder(arch, dim, mlp, small_stem)
        self.encoder_k = copy.deepcopy(self.encoder_q)
        for p in self.encoder_k.parameters():
            p.requires_grad = False
        self.register_buffer("queue", F.normalize(torch.randn(dim, K), dim=0))
        self.ptr = 0

    def encode(self, encoder, x):
        # per-GPU BatchNorm: each chunk of the batch is its own BatchNorm batch
        return torch.cat([encoder(chunk) for chunk in x.chunk(self.groups)])

    def forward(self, im_q, im_k):
        q = F.normalize(self.encode(self.encoder_q, im_q), dim=1)
        with torch.no_grad():
            for p_k, p_q in zip(self.encoder_k.parameters(), self.encoder_q.parameters()):
                p_k.data = p_k.data * self.m + p_q.data * (1.0 - self.m)
            perm = torch.randperm(im_k.shape[0], device=im_k.device)
            k = F.normalize(self.encode(self.encoder_k, im_k[perm]), dim=1)[torch.argsort(perm)]
        l_pos = torch.einsum("nc,nc->n", q, k).unsqueeze(-1)
        l_neg = torch.einsum("nc,ck->nk", q, self.queue.clone().detach())
        logits = torch.cat([l_pos, l_neg], dim=1) / self.T
        with torch.no_grad():
            n = k.shape[0]
            self.queue[:, self.ptr:self.ptr + n] = k.T
            self.ptr = (self.ptr + n) % self.K
        return logits


def bench_device(device, quick):
    arch, small_stem, batch, size, K = ("resnet18", True, 32, 32, 4096) if quick else ("resnet50", False, 128, 224, 65536)
    batch = BATCH or batch
    repeats = 10 if device.type == "cuda" else 1
    for groups in (4, 1):
        torch.manual_seed(0)
        model = channels_last(MoCoStep(arch, 128, K, 0.999, 0.2, True, groups, small_stem).to(device))
        optimizer = torch.optim.SGD(model.encoder_q.parameters(), 0.015, momentum=0.9, weight_decay=1e-4)
        criterion = nn.CrossEntropyLoss()
        im_q = channels_last(torch.randn(batch, 3, size, size, device=device))
        im_k = channels_last(torch.randn(batch, 3, size, size, device=device))
        labels = torch.zeros(batch, dtype=torch.long, device=device)
        last = {}

        def step():
            with amp(device):  # --precision bf16: autocast; the loss is f32 either way
                logits = model(im_q, im_k)
                loss = criterion(logits, labels)
            logits.topk(5, dim=1)  # the reference measures top-1/top-5 every step
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            last["loss"] = loss.item()

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds = seconds_per_call(device, repeats, step)
        # the peak of allocated memory during the timed steps, as the engine's twin prints it
        peak = f"  peak {torch.cuda.max_memory_allocated(device) / 1048576:.0f} MiB" if device.type == "cuda" else ""
        print(f"{str(device):<6} {arch:<9} {'small-stem ' if small_stem else ''}mlp {size:>4}px batch {batch:>3} "
              f"({groups} groups) K {K:>5}: {1e3 * seconds:8.1f} ms/step {batch / seconds:8.1f} img/s  "
              f"(loss {last['loss']:.3f}){peak}")


if __name__ == "__main__":
    # --batch N: the global batch instead of the case's, taken off before the shared flags
    if "--batch" in sys.argv:
        i = sys.argv.index("--batch")
        BATCH = int(sys.argv[i + 1])
        del sys.argv[i:i + 2]
    run_benchmark(bench_device, STEP_PRECISIONS)
