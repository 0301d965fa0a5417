"""PyTorch baseline for bench/ops/bench_nt_xent.cpp: SimCLR's NT-Xent as it is usually written (the
two views concatenated, z z^T / T, the diagonal masked with -inf, the alpha z.t / T columns of the
hard negatives appended, cross_entropy with label (r + B) mod 2B, top-1/top-5 counts read on the
host, backward to z), at the same sizes (B = 256, D = 128, n_h = 0 and 2, T = 0.2, alpha = 2), with
the same bounds (GEMM rate and copy bandwidth measured in the same run) and the same table format.
Both sides use all of the machine's cores (timing.py sets PyTorch's threads to os.cpu_count(); the
engine's OpenMP and OpenBLAS default to the same).

    python3 bench/torch_ref/bench_nt_xent.py [--device cpu|cuda|all] [--quick]
"""

import torch
import torch.nn.functional as F

from timing import run_benchmark, seconds_per_call


def unit_rows(shape, device, gen):
    return F.normalize(torch.randn(*shape, generator=gen), dim=-1).to(device)


def reference_loss(z, hard, alpha, temperature):
    """The usual formulation: logits (2B, 2B + n_h) with -inf on the diagonal, label p(r), accuracy."""
    n = z.shape[0]
    b = n // 2
    sim = (z @ z.t() / temperature).masked_fill(torch.eye(n, dtype=torch.bool, device=z.device), float("-inf"))
    logits = sim
    if hard is not None:
        t = torch.cat([hard, hard], dim=0)
        logits = torch.cat([sim, alpha * torch.einsum("rd,rhd->rh", z, t) / temperature], dim=1)
    labels = torch.cat([torch.arange(b, n, device=z.device), torch.arange(0, b, device=z.device)])
    loss = F.cross_entropy(logits, labels)
    hits = logits.topk(5, dim=1).indices.eq(labels.unsqueeze(1))
    counts = (hits[:, :1].sum().item(), hits.sum().item())
    return loss, counts


def bench_device(device, quick):
    gpu = device.type == "cuda"
    b, d = 64 if quick else 256, 128
    n = 2 * b
    repeats = 20 if gpu else 10
    gen = torch.Generator(device="cpu").manual_seed(0)

    mm = 512 if quick else (8192 if gpu else 1024)
    a, bb = unit_rows((mm, mm), device, gen), unit_rows((mm, mm), device, gen)
    gemm_rate = 2 * mm ** 3 / seconds_per_call(device, 10 if gpu else 2, lambda: a @ bb)
    copy_elems = 1 << 22 if quick else (1 << 26 if gpu else 1 << 24)
    big = torch.zeros(copy_elems, device=device)
    copy_rate = 2 * copy_elems * 4 / seconds_per_call(device, repeats, lambda: big.clone())

    alpha, temperature, f = 2.0, 0.2, 4
    table = []
    for n_h in (0, 2):
        z = unit_rows((n, d), device, gen)
        hard = unit_rows((b, n_h, d), device, gen) if n_h > 0 else None
        shape = f"2B{n} D{d} n_h{n_h}"
        flops = 2 * n * n * d + 2 * n * n_h * d
        with torch.no_grad():
            table.append(("nt_xent fwd", shape,
                          seconds_per_call(device, repeats, lambda: reference_loss(z, hard, alpha, temperature)),
                          flops, f * (2 * n * n + n * d + n * n_h * d)))
        z_leaf = z.clone().requires_grad_(True)

        def fwd_bwd():
            z_leaf.grad = None
            reference_loss(z_leaf, hard, alpha, temperature)[0].backward()

        table.append(("nt_xent fwd+bwd", shape, seconds_per_call(device, repeats, fwd_bwd), 2 * flops,
                      f * (5 * n * n + 3 * n * d + 2 * n * n_h * d + (2 * n * d if n_h > 0 else 0))))

    print(f"\ntorch {torch.__version__} {device} (f32{', TF32 off' if gpu else ''}, {torch.get_num_threads()} threads; "
          f"GEMM {gemm_rate / 1e12:.2f} TFLOP/s at {mm}^3, copy {copy_rate / 1e9:.1f} GB/s, measured in this run)")
    print(f"{'op':<22} {'shape':<24} {'time (ms)':>10} {'TFLOP/s':>9} {'GB/s':>9} {'bound (ms)':>10} {'of bound':>9}")
    for op, shape, s, flops, nbytes in table:
        bound = max(flops / gemm_rate, nbytes / copy_rate)
        print(f"{op:<22} {shape:<24} {s * 1e3:>10.3f} {flops / s / 1e12:>9.2f} {nbytes / s / 1e9:>9.1f} "
              f"{bound * 1e3:>10.3f} {100 * bound / s:>8.0f}%")


if __name__ == "__main__":
    run_benchmark(bench_device)
