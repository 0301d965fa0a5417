"""PyTorch baseline for bench/ops/bench_ops.cpp: the same ops, sizes and method (one warm-up,
then `repeats` calls between two synchronisations, median of 5 rounds), printed in the same table
format so the two can be read side by side.

    python3 bench/torch_ref/bench_ops.py [--device cpu|cuda|all] [--quick]
"""

import torch

from timing import run_benchmark, seconds_per_call


def bench_device(device, quick):
    gpu = device.type == "cuda"
    n = 1 << 20 if quick else (1 << 26 if gpu else 1 << 24)
    repeats = 20 if gpu else 3
    nbytes = n * 4
    gen = torch.Generator(device="cpu").manual_seed(0)
    rand = lambda *shape: (torch.rand(*shape, generator=gen) + 0.5).to(device)
    a, b = rand(n), rand(n)
    rows = 1024 if quick else 4096
    m = rand(rows, n // rows)
    mm = 256 if quick else (8192 if gpu else 1024)
    x, y = rand(mm, mm), rand(mm, mm)
    fill = torch.empty(n, device=device)
    table = []

    def gbps(op, shape, nbytes_moved, fn):
        table.append((op, shape, seconds_per_call(device, repeats, fn), nbytes_moved / 1e9, "GB/s"))

    vec, mat = f"({n},)", f"({rows}, {n // rows})"
    gbps("add", vec, 3 * nbytes, lambda: a + b)
    gbps("mul", vec, 3 * nbytes, lambda: a * b)
    gbps("mul_scalar", vec, 2 * nbytes, lambda: a * 0.5)
    gbps("relu", vec, 2 * nbytes, lambda: torch.relu(a))
    gbps("exp", vec, 2 * nbytes, lambda: torch.exp(a))
    gbps("sum(dim=1)", mat, nbytes, lambda: m.sum(1))
    gbps("sum(dim=0)", mat, nbytes, lambda: m.sum(0))
    gbps("uniform_", vec, nbytes, lambda: fill.uniform_())
    gbps("normal_", vec, nbytes, lambda: fill.normal_())
    table.append(("matmul", f"({mm}, {mm}) @ ({mm}, {mm})",
                  seconds_per_call(device, 10 if gpu else 2, lambda: x @ y), 2 * mm ** 3 / 1e12, "TFLOP/s"))

    print(f"\ntorch {torch.__version__} {device} (f32{', TF32 off' if gpu else ''}, {torch.get_num_threads()} threads)")
    print(f"{'op':<12} {'shape':<28} {'time (ms)':>12} {'rate':>12}")
    for op, shape, s, amount, unit in table:
        print(f"{op:<12} {shape:<28} {s * 1e3:>12.3f} {amount / s:>8.2f} {unit}")


if __name__ == "__main__":
    run_benchmark(bench_device)
