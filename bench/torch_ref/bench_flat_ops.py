"""PyTorch baseline for bench/ops/bench_flat_ops.cpp: the momentum update, the SGD step and
shuffle-BN's index_select at the same sizes, timed the same way (one warm-up, then `repeats` calls
between two synchronisations, median of 5 rounds), printed in the same table format. Rates count
the same bytes as the engine's table (the least the op must move), whatever PyTorch moves.

Two forms of each update:
  - the reference's: MoCo's Python loop over the 163 parameter tensors of ResNet-50 with the MLP
    head, `param_k.data = param_k.data * m + param_q.data * (1. - m)` ([per-tensor] rows), and
    torch.optim.SGD(momentum 0.9, weight decay 1e-4, default foreach) over the model's parameters;
  - over one flat tensor of as many parameters: the same expression, and optim.SGD on one tensor.
And SimCLR's LARS step (momentum 0.9, weight decay 1e-6, eta 0.001, lr 4.8) as a Python loop of
torch ops over ResNet-50's 159 trunk tensors (the list bench_flat_ops.cpp builds, checked here
against torchvision's): per tensor, weight decay and trust ratio unless it has one dimension,
then v = momentum v + lr trust g, w -= v (ops/lars_step.h has the rule). Rate: 28 bytes per
parameter of an adapted tensor and 20 of an excluded one, as the engine's table counts.

    python3 bench/torch_ref/bench_flat_ops.py [--device cpu|cuda|all] [--quick]

--quick uses ResNet-18 for the per-tensor rows, 2^20 parameters for the flat ones and ResNet-50's
159 trunk tensors at a quarter of their width for LARS (as the engine's --quick).
"""

import torch
import torchvision

from timing import run_benchmark, seconds_per_call

M = 0.999
LARS_MOMENTUM, LARS_WD, LARS_ETA, LARS_LR = 0.9, 1e-6, 0.001, 4.8


def resnet50_trunk_shapes(width):
    """torchvision's ResNet-50 without fc, in named_parameters() order, stem width `width`."""
    shapes = [(width, 3, 7, 7), (width,), (width,)]

    def conv_bn(out, inp, k):
        shapes.extend([(out, inp, k, k), (out,), (out,)])

    inplanes = width
    for layer, blocks in enumerate((3, 4, 6, 3)):
        planes = width << layer
        for block in range(blocks):
            conv_bn(planes, inplanes, 1)
            conv_bn(planes, planes, 3)
            conv_bn(planes * 4, planes, 1)
            if block == 0:
                conv_bn(planes * 4, inplanes, 1)  # downsample
            inplanes = planes * 4
    return shapes


def lars_bench(device, quick, rand, gbps):
    """SimCLR's LARS over the trunk's tensors, as a loop of torch ops (no host synchronisation:
    the trust ratio stays a tensor)."""
    shapes = resnet50_trunk_shapes(16 if quick else 64)
    if not quick:
        reference = [tuple(p.shape) for n, p in torchvision.models.resnet50().named_parameters()
                     if not n.startswith("fc.")]
        assert shapes == reference, "resnet50_trunk_shapes no longer matches torchvision's resnet50"
    params = [rand(*s) for s in shapes]
    grads = [rand(*s, scale=0.01) for s in shapes]
    bufs = [rand(*s, scale=0.01) for s in shapes]
    one = torch.ones((), device=device)

    def lars_loop():
        for w, grad, v in zip(params, grads, bufs):
            if w.dim() > 1:
                g = grad.add(w, alpha=LARS_WD)
                w_norm, g_norm = torch.linalg.norm(w), torch.linalg.norm(g)
                trust = torch.where((w_norm > 0) & (g_norm > 0), LARS_ETA * w_norm / g_norm, one)
                v.mul_(LARS_MOMENTUM).add_(g * (LARS_LR * trust))
            else:
                v.mul_(LARS_MOMENTUM).add_(grad, alpha=LARS_LR)
            w.sub_(v)

    values = sum(w.numel() for w in params)
    nbytes = sum(w.numel() * 4 * (7 if w.dim() > 1 else 5) for w in params)
    gbps("lars_step[per-tensor]", f"resnet50: {values} in {len(params)}", nbytes, lars_loop)


def moco_encoder(arch, device):
    """torchvision's model with MoCo v2's MLP head (dim_mlp -> dim_mlp -> 128), as MoCo builds it."""
    model = getattr(torchvision.models, arch)(num_classes=128)
    dim_mlp = model.fc.weight.shape[1]
    model.fc = torch.nn.Sequential(torch.nn.Linear(dim_mlp, dim_mlp), torch.nn.ReLU(), model.fc)
    return model.to(device)


def bench_device(device, quick):
    gpu = device.type == "cuda"
    repeats = 20 if gpu else 3
    arch = "resnet18" if quick else "resnet50"
    encoder_q, encoder_k = moco_encoder(arch, device), moco_encoder(arch, device)
    encoder_k.load_state_dict(encoder_q.state_dict())
    params_q, params_k = list(encoder_q.parameters()), list(encoder_k.parameters())
    model_n = sum(p.numel() for p in params_q)
    n = 1 << 20 if quick else model_n
    batch = 16 if quick else 128
    gen = torch.Generator(device="cpu").manual_seed(0)
    rand = lambda *shape, scale=0.1: ((torch.rand(*shape, generator=gen) * 2 - 1) * scale).to(device)
    table = []

    def gbps(op, shape, nbytes_moved, fn):
        table.append((op, shape, seconds_per_call(device, repeats, fn), nbytes_moved / 1e9))

    # The momentum update: MoCo's loop, then the same expression over one flat tensor.
    def momentum_loop():
        for param_q, param_k in zip(params_q, params_k):
            param_k.data = param_k.data * M + param_q.data * (1. - M)

    flat_k, flat_q = rand(n), rand(n)

    def momentum_flat():
        flat_k.data = flat_k.data * M + flat_q.data * (1. - M)

    model_shape = f"{arch}: {model_n} in {len(params_q)}"
    gbps("momentum_update[per-tensor]", model_shape, 12 * model_n, momentum_loop)
    gbps("momentum_update", f"({n},)", 12 * n, momentum_flat)

    # SGD: optim.SGD over the model's parameters (default foreach: on for CUDA tensors), then one
    # flat tensor. The warm-up call is the first step, which creates the momentum buffers.
    for p in params_q:
        p.grad = rand(*p.shape, scale=0.01)
    sgd_model = torch.optim.SGD(params_q, lr=0.015, momentum=0.9, weight_decay=1e-4)
    gbps("sgd_step[per-tensor]", model_shape, 20 * model_n, sgd_model.step)
    flat_p = torch.nn.Parameter(rand(n))
    flat_p.grad = rand(n, scale=0.01)
    sgd_flat = torch.optim.SGD([flat_p], lr=0.015, momentum=0.9, weight_decay=1e-4)
    gbps("sgd_step", f"({n},)", 20 * n, sgd_flat.step)

    lars_bench(device, quick, rand, gbps)

    # Shuffle-BN: a batch of images permuted along dim 0.
    images = rand(batch, 3, 224, 224, scale=2.0)
    step = 37
    while torch.gcd(torch.tensor(step), torch.tensor(batch)).item() != 1:
        step += 1
    perm = torch.tensor([(i * step + 11) % batch for i in range(batch)], device=device)
    gbps("index_select", f"({batch}, 3, 224, 224)", 2 * images.numel() * 4, lambda: images.index_select(0, perm))

    print(f"\ntorch {torch.__version__} {device} (f32, {torch.get_num_threads()} threads)")
    print(f"{'op':<28} {'shape':<28} {'time (ms)':>12} {'rate':>12}")
    for op, shape, s, gigabytes in table:
        print(f"{op:<28} {shape:<28} {s * 1e3:>12.3f} {gigabytes / s:>8.2f} GB/s")


if __name__ == "__main__":
    with torch.no_grad():
        run_benchmark(bench_device)
