"""PyTorch baseline for bench/ops/bench_infonce.cpp: the reference's loss computation (einsum for
the positive, queue and hard-negative logits, cat, division by T, CrossEntropyLoss with label 0,
top-1/top-5 counts read on the host, backward to q) and F.normalize, at the same sizes, with the
same bounds (GEMM rate and copy bandwidth measured in the same run) and the same table format.

    python3 bench/torch_ref/bench_infonce.py [--device cpu|cuda|all] [--quick]
"""

import torch
import torch.nn.functional as F

from timing import run_benchmark, seconds_per_call


def unit_rows(shape, device, gen):
    return F.normalize(torch.randn(*shape, generator=gen), dim=-1).to(device)


def reference_loss(q, k, queue, hard, alpha, temperature):
    """As the reference builder and training loop: logits (N, 1 + K + n_h), label 0, accuracy."""
    l_pos = torch.einsum("nc,nc->n", q, k).unsqueeze(-1)
    l_neg = torch.einsum("nc,ck->nk", q, queue)
    l_hard = alpha * torch.einsum("nc,nhc->nh", q, hard)
    logits = torch.cat([l_pos, l_neg, l_hard], dim=1) / temperature
    labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    loss = torch.nn.functional.cross_entropy(logits, labels)
    hits = logits.topk(5, dim=1).indices.eq(0)
    counts = (hits[:, :1].sum().item(), hits.sum().item())
    return loss, counts


def bench_device(device, quick):
    gpu = device.type == "cuda"
    n, d, k_len, n_h = 128, 128, 4096 if quick else 65536, 1
    repeats = 20 if gpu else 2
    gen = torch.Generator(device="cpu").manual_seed(0)

    mm = 512 if quick else (8192 if gpu else 1024)
    a, b = unit_rows((mm, mm), device, gen), unit_rows((mm, mm), device, gen)
    gemm_rate = 2 * mm ** 3 / seconds_per_call(device, 10 if gpu else 2, lambda: a @ b)
    copy_elems = 1 << 22 if quick else (1 << 26 if gpu else 1 << 24)
    big = torch.zeros(copy_elems, device=device)
    copy_rate = 2 * copy_elems * 4 / seconds_per_call(device, repeats, lambda: big.clone())

    q, k = unit_rows((n, d), device, gen), unit_rows((n, d), device, gen)
    queue = unit_rows((k_len, d), device, gen).t().contiguous()
    hard = unit_rows((n, n_h, d), device, gen)
    alpha, temperature = 2.0, 0.2
    gemm, f = 2 * n * d * k_len, 4
    shape = f"N{n} D{d} K{k_len} n_h{n_h}"
    table = []
    with torch.no_grad():
        table.append(("infonce fwd", shape,
                      seconds_per_call(device, repeats, lambda: reference_loss(q, k, queue, hard, alpha, temperature)),
                      gemm, f * (d * k_len + 2 * n * k_len)))
        table.append(("l2_normalize fwd", f"({n}, {d})",
                      seconds_per_call(device, repeats, lambda: F.normalize(q, dim=1)), 0, f * 2 * n * d))
    q_leaf = q.clone().requires_grad_(True)

    def fwd_bwd():
        q_leaf.grad = None
        reference_loss(q_leaf, k, queue, hard, alpha, temperature)[0].backward()

    table.append(("infonce fwd+bwd", shape, seconds_per_call(device, repeats, fwd_bwd),
                  2 * gemm, f * (2 * d * k_len + 5 * n * k_len)))
    seed = unit_rows((n, d), device, gen)

    def normalize_fwd_bwd():
        q_leaf.grad = None
        F.normalize(q_leaf, dim=1).backward(seed)

    table.append(("l2_normalize fwd+bwd", f"({n}, {d})", seconds_per_call(device, repeats, normalize_fwd_bwd),
                  0, f * 5 * n * d))

    print(f"\ntorch {torch.__version__} {device} (f32{', TF32 off' if gpu else ''}, {torch.get_num_threads()} threads; "
          f"GEMM {gemm_rate / 1e12:.2f} TFLOP/s at {mm}^3, copy {copy_rate / 1e9:.1f} GB/s, measured in this run)")
    print(f"{'op':<22} {'shape':<24} {'time (ms)':>10} {'TFLOP/s':>9} {'GB/s':>9} {'bound (ms)':>10} {'of bound':>9}")
    for op, shape, s, flops, nbytes in table:
        bound = max(flops / gemm_rate, nbytes / copy_rate)
        print(f"{op:<22} {shape:<24} {s * 1e3:>10.3f} {flops / s / 1e12:>9.2f} {nbytes / s / 1e9:>9.1f} "
              f"{bound * 1e3:>10.3f} {100 * bound / s:>8.0f}%")


if __name__ == "__main__":
    run_benchmark(bench_device)
