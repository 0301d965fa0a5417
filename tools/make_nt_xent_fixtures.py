#!/usr/bin/python3
"""Writes the NT-Xent fixture that tests/ops/test_nt_xent.cpp checks ops/nt_xent.h against.

Run with Debian's Python, which has PyTorch; the tests themselves never need Python:

    /usr/bin/python3 tools/make_nt_xent_fixtures.py      # rewrites tests/fixtures/nt_xent/cases.safetensors

The loss is written the way SimCLR implementations usually write it, independently of the engine:
the two views concatenated, sim = z z^T / T, the diagonal masked with -inf, the alpha z.t / T
columns of the hard negatives appended, and cross_entropy with label p(r) = (r + B) mod 2B. Float64
throughout; dz comes from PyTorch's autograd (the hard negatives are constants). For each case
<name> the file holds:
  <name>.z (2B, D), <name>.hard (B, n_h, D) (absent when n_h = 0), <name>.temperature and
  <name>.alpha (0-d), <name>.loss (0-d), <name>.dz (2B, D), and <name>.correct (2,) i64: the rows
  whose positive logit no other logit of the row exceeds, and those with fewer than 5 exceeding it.
The cases:
  b4_d8_hard2:     B = 4, D = 8, n_h = 2, T = 0.5, alpha = 2, unit rows (as SimCLR's projection
                   head output after normalisation), the view-2 rows close to their view-1 rows;
  b3_d5_no_hard:   B = 3, D = 5, no hard negatives, T = 0.1, unit rows;
  b2_d3_non_unit:  B = 2, D = 3, n_h = 1, T = 0.2, alpha = 0.5, rows and hard negatives of norms
                   from about 0.3 to 3 (nothing in the loss assumes unit vectors).
"""
import argparse
import os

import torch
import torch.nn.functional as F

from safetensors_io import save_safetensors  # tools/safetensors_io.py, beside this script

CASES = {
    "b4_d8_hard2": dict(B=4, D=8, n_h=2, temperature=0.5, alpha=2.0, unit=True),
    "b3_d5_no_hard": dict(B=3, D=5, n_h=0, temperature=0.1, alpha=1.0, unit=True),
    "b2_d3_non_unit": dict(B=2, D=3, n_h=1, temperature=0.2, alpha=0.5, unit=False),
}


def simclr_loss(z1, z2, hard, temperature, alpha):
    """The usual NT-Xent: (2B, 2B - 1 + n_h) logits with the self-similarity masked out."""
    b = z1.shape[0]
    z = torch.cat([z1, z2], dim=0)
    sim = z @ z.t() / temperature
    sim = sim.masked_fill(torch.eye(2 * b, dtype=torch.bool), float("-inf"))
    logits = sim
    if hard is not None:
        t = torch.cat([hard, hard], dim=0)  # image i's hard negatives serve both of its rows
        logits = torch.cat([sim, alpha * torch.einsum("rd,rhd->rh", z, t) / temperature], dim=1)
    labels = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)])
    loss = F.cross_entropy(logits, labels)
    positive = logits[torch.arange(2 * b), labels].unsqueeze(1)
    exceeding = (logits > positive).sum(dim=1)  # -inf on the diagonal never exceeds
    correct = torch.tensor([(exceeding < 1).sum().item(), (exceeding < 5).sum().item()], dtype=torch.int64)
    return loss, correct


def make_case(gen, B, D, n_h, temperature, alpha, unit):
    z1 = torch.randn(B, D, generator=gen, dtype=torch.float64)
    z2 = z1 + 0.7 * torch.randn(B, D, generator=gen, dtype=torch.float64)
    hard = torch.randn(B, n_h, D, generator=gen, dtype=torch.float64) if n_h > 0 else None
    if unit:
        z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
        hard = F.normalize(hard, dim=2) if hard is not None else None
    else:  # norms spread over a decade, each row its own
        z1 = z1 * torch.pow(10.0, torch.rand(B, 1, generator=gen, dtype=torch.float64) - 0.5)
        z2 = z2 * torch.pow(10.0, torch.rand(B, 1, generator=gen, dtype=torch.float64) - 0.5)
        hard = hard * 1.5
    z = torch.cat([z1, z2], dim=0).requires_grad_(True)
    loss, correct = simclr_loss(z[:B], z[B:], hard, temperature, alpha)
    loss.backward()
    tensors = {"z": z.detach(), "temperature": torch.tensor(temperature, dtype=torch.float64),
               "alpha": torch.tensor(alpha, dtype=torch.float64), "loss": loss.detach(), "dz": z.grad,
               "correct": correct}
    if hard is not None:
        tensors["hard"] = hard
    return tensors


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "nt_xent"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(20261206)
    tensors = {}
    for name, case in CASES.items():
        for key, value in make_case(gen, **case).items():
            tensors[f"{name}.{key}"] = value
    metadata = {"torch": torch.__version__, "cases": ",".join(CASES)}
    path = os.path.join(args.out, "cases.safetensors")
    save_safetensors(path, tensors, metadata)
    print(f"wrote {os.path.normpath(path)} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
