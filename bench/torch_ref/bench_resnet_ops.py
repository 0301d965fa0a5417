"""PyTorch baseline for bench/ops/bench_resnet_ops.cpp: the same ops, shapes, rates and method (one
warm-up, then `repeats` calls between two synchronisations, median of 5 rounds), with
cudnn.benchmark on and TF32 off, printed in the same table format.

The engine's fused batchnorm2d_relu and batchnorm2d_add_relu have no PyTorch op: their twins are
the rows 'batchnorm2d+relu' and 'batchnorm2d+add+relu', torchvision's Bottleneck composition
(F.batch_norm, an in-place add of the shortcut, an in-place ReLU), rated by the fused op's traffic
as the engine's rows are.

    python3 bench/torch_ref/bench_resnet_ops.py [--device cpu|cuda|all] [--quick]
"""

import torch
import torch.nn.functional as F

from timing import run_benchmark, seconds_per_call

CONV_SHAPES = [  # name, C, H, K, R, stride, pad: where ResNet-50 spends its convolution time
    ("stem 7x7/2", 3, 224, 64, 7, 2, 3),
    ("layer1 3x3", 64, 56, 64, 3, 1, 1),
    ("layer1 1x1 expand", 64, 56, 256, 1, 1, 0),
    ("layer3 3x3", 256, 14, 256, 3, 1, 1),
]


def bench_fused_batchnorm(table, device, quick, repeats, rand, dtype, cl, tag, copy_gbps):
    """The engine's fused-BatchNorm rows' twins: training, layer1's 64 and 256 channels at 56x56 and
    the last stage's 2048 at 7x7, batch 256 on a GPU (the engine's other CPU rows' 4 on the CPU)."""
    gpu = device.type == "cuda"
    n = 2 if quick else (256 if gpu else 4)
    pdtype = torch.float32 if dtype == torch.bfloat16 else dtype
    for c, h in ((64, 56), (256, 56), (2048, 7)):
        h = min(h, 14) if quick else h
        x, r = rand((n, c, h, h), dtype, cl), rand((n, c, h, h), dtype, cl)
        gamma = torch.ones(c, device=device, dtype=pdtype)
        beta = torch.zeros(c, device=device, dtype=pdtype)
        rm, rv = torch.zeros(c, device=device, dtype=pdtype), torch.ones(c, device=device, dtype=pdtype)
        act_gb = x.numel() * x.element_size() / 1e9
        shape = str(tuple(x.shape))

        def bn_relu():
            return F.relu(F.batch_norm(x, rm, rv, gamma, beta, True, 0.1, 1e-5), inplace=True)

        def bn_add_relu():
            out = F.batch_norm(x, rm, rv, gamma, beta, True, 0.1, 1e-5)
            out += r
            return F.relu(out, inplace=True)

        def row(op, gb, fn):
            s = seconds_per_call(device, repeats, fn)
            table.append((f"{op} {tag}", shape, s, gb, "GB/s", f"{100 * gb / s / copy_gbps:.0f}% of copy"))

        with torch.no_grad():
            row("batchnorm2d+relu fwd train", 2 * act_gb, bn_relu)
            row("batchnorm2d+add+relu fwd train", 3 * act_gb, bn_add_relu)
        for t in (x, r, gamma, beta):
            t.requires_grad_(True)
        seed = rand(tuple(x.shape), dtype, cl)
        row("batchnorm2d+relu fwd+bwd train", 6 * act_gb, lambda: bn_relu().backward(seed))
        row("batchnorm2d+add+relu fwd+bwd train", 8 * act_gb, lambda: bn_add_relu().backward(seed))


def bench_device(device, quick):
    gpu = device.type == "cuda"
    torch.backends.cudnn.benchmark = True
    n = 2 if quick else (64 if gpu else 4)
    repeats = 10 if gpu else 1
    gen = torch.Generator(device="cpu").manual_seed(0)

    def rand(shape, dtype=torch.float32, channels_last=False):
        t = (torch.rand(*shape, generator=gen) * 2 - 1).to(device=device, dtype=dtype)
        return t.contiguous(memory_format=torch.channels_last) if channels_last else t

    table = []
    copy_elems = 1 << 20 if quick else (1 << 26 if gpu else 1 << 24)
    big = rand((copy_elems,))
    copy_s = seconds_per_call(device, repeats, lambda: big.clone())
    copy_gbps = 2 * copy_elems * 4 / copy_s / 1e9
    table.append(("copy (clone)", f"({copy_elems},)", copy_s, 2 * copy_elems * 4 / 1e9, "GB/s", ""))

    variants = [(torch.float32, False)]
    if gpu:
        variants += [(torch.float32, True), (torch.bfloat16, True)]
    for dtype, cl in variants:
        tag = f"{'f32' if dtype == torch.float32 else 'bf16'} {'NHWC' if cl else 'NCHW'}"
        for name, c, h, k, r, stride, pad in CONV_SHAPES:
            h = min(h, 28) if quick else h
            x, w = rand((n, c, h, h), dtype, cl), rand((k, c, r, r), dtype, cl)
            p = (h + 2 * pad - r) // stride + 1
            tflop = 2.0 * n * k * p * p * c * r * r / 1e12
            shape = f"N{n} C{c} {h}x{h} K{k}"
            with torch.no_grad():
                table.append((f"conv2d fwd {name} {tag}", shape,
                              seconds_per_call(device, repeats, lambda: F.conv2d(x, w, None, stride, pad)), tflop,
                              "TFLOP/s", ""))
            x.requires_grad_(True)
            w.requires_grad_(True)
            seed = rand((n, k, p, p), dtype, cl)
            table.append((f"conv2d fwd+bwd {name} {tag}", shape,
                          seconds_per_call(device, repeats, lambda: F.conv2d(x, w, None, stride, pad).backward(seed)),
                          3 * tflop, "TFLOP/s", ""))

        c, h = 256, 14 if quick else 56
        x = rand((n, c, h, h), dtype, cl)
        pdtype = torch.float32 if gpu else dtype
        gamma = torch.ones(c, device=device, dtype=pdtype)
        beta = torch.zeros(c, device=device, dtype=pdtype)
        rm, rv = torch.zeros(c, device=device, dtype=pdtype), torch.ones(c, device=device, dtype=pdtype)
        act_gb = x.numel() * x.element_size() / 1e9
        shape = str(tuple(x.shape))

        def bn_row(op, gb, fn):
            s = seconds_per_call(device, repeats, fn)
            table.append((f"{op} {tag}", shape, s, gb, "GB/s", f"{100 * gb / s / copy_gbps:.0f}% of copy"))

        with torch.no_grad():
            bn_row("batchnorm2d fwd train", 2 * act_gb, lambda: F.batch_norm(x, rm, rv, gamma, beta, True, 0.1, 1e-5))
            bn_row("batchnorm2d fwd eval", 2 * act_gb, lambda: F.batch_norm(x, rm, rv, gamma, beta, False, 0.1, 1e-5))
        x.requires_grad_(True)
        gamma.requires_grad_(True)
        seed = rand(tuple(x.shape), dtype, cl)
        bn_row("batchnorm2d fwd+bwd train", 5 * act_gb,
               lambda: F.batch_norm(x, rm, rv, gamma, beta, True, 0.1, 1e-5).backward(seed))

        bench_fused_batchnorm(table, device, quick, repeats, rand, dtype, cl, tag, copy_gbps)

    print(f"\n{device} (PyTorch {torch.__version__}, cudnn.benchmark, TF32 off)")
    print(f"{'op':<46} {'shape':<22} {'time (ms)':>11} {'rate':>12}")
    for op, shape, s, amount, unit, note in table:
        print(f"{op:<46} {shape:<22} {s * 1e3:>11.3f} {amount / s:>8.2f} {unit:<7} {note}")


if __name__ == "__main__":
    run_benchmark(bench_device)
