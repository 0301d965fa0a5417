#!/usr/bin/python3
"""Writes the optimizer fixtures that tests/ops/test_flat_update_ops.cpp checks to the bit.

Run with Debian's Python, which has PyTorch; the tests themselves never need Python:

    /usr/bin/python3 tools/make_optimizer_fixtures.py      # rewrites tests/fixtures/optimizer/

What PyTorch computed, in float32 on the CPU, is stored (small: a flat tensor of 1000 values):
  - sgd_steps.safetensors: torch.optim.SGD's single-tensor path (foreach=False, the CPU default)
    run for 5 steps over one flat parameter tensor with a new gradient and learning rate at each
    step (lr 0.015, 0.014, 0.01, 0.005, 0.001), for three settings: "plain" (momentum 0.9,
    weight decay 1e-4: MoCo's), "nesterov" (the same with Nesterov momentum) and "dampening"
    (momentum 0.9, dampening 0.1, weight decay 5e-4). Stored: params0 (n), grads (5, n), lr (5,),
    and per setting <setting>.params and <setting>.momentum_buffer (5, n), the state after each step.
  - momentum_update.safetensors: MoCo's key-encoder update as the reference writes it,
    `param_k.data = param_k.data * m + param_q.data * (1. - m)` with m = 0.999, applied 3 times
    with a new query each time. Stored: key0 (n), queries (3, n), keys (3, n) after each update.
Parameters and gradients span several orders of magnitude, so that every rounding matters.
"""
import argparse
import os

import torch

from safetensors_io import save_safetensors  # tools/safetensors_io.py, beside this script

N = 1000
STEPS = 5
LRS = (0.015, 0.014, 0.01, 0.005, 0.001)
SETTINGS = {
    "plain": dict(momentum=0.9, weight_decay=1e-4, dampening=0.0, nesterov=False),
    "nesterov": dict(momentum=0.9, weight_decay=1e-4, dampening=0.0, nesterov=True),
    "dampening": dict(momentum=0.9, weight_decay=5e-4, dampening=0.1, nesterov=False),
}
MOMENTUM_M = 0.999
MOMENTUM_UPDATES = 3


def spread(gen, *shape):
    """Normal values scaled by 10^u, u uniform in [-3, 1): magnitudes from 1e-3 to 10."""
    scale = torch.pow(10.0, torch.rand(*shape, generator=gen) * 4 - 3)
    return torch.randn(*shape, generator=gen) * scale


def sgd_fixture(gen):
    params0 = spread(gen, N)
    grads = spread(gen, STEPS, N) * 0.1
    tensors = {"params0": params0, "grads": grads, "lr": torch.tensor(LRS, dtype=torch.float64)}
    for name, setting in SETTINGS.items():
        p = torch.nn.Parameter(params0.clone())
        opt = torch.optim.SGD([p], lr=LRS[0], foreach=False, **setting)
        params, buffers = [], []
        for step in range(STEPS):
            opt.param_groups[0]["lr"] = LRS[step]
            p.grad = grads[step].clone()
            opt.step()
            params.append(p.detach().clone())
            buffers.append(opt.state[p]["momentum_buffer"].clone())
        tensors[f"{name}.params"] = torch.stack(params)
        tensors[f"{name}.momentum_buffer"] = torch.stack(buffers)
    metadata = {"torch": torch.__version__, "n": N, "steps": STEPS, "lrs": ",".join(map(str, LRS))}
    for name, setting in SETTINGS.items():
        metadata[name] = ",".join(f"{k}={v}" for k, v in setting.items())
    return tensors, metadata


def momentum_fixture(gen):
    key = spread(gen, N)
    queries = spread(gen, MOMENTUM_UPDATES, N)
    tensors = {"key0": key.clone(), "queries": queries}
    keys = []
    for q in queries:
        key = key * MOMENTUM_M + q * (1. - MOMENTUM_M)  # the reference's expression
        keys.append(key.clone())
    tensors["keys"] = torch.stack(keys)
    return tensors, {"torch": torch.__version__, "m": str(MOMENTUM_M)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "optimizer"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(20240615)
    for file, make in (("sgd_steps.safetensors", sgd_fixture), ("momentum_update.safetensors", momentum_fixture)):
        tensors, metadata = make(gen)
        path = os.path.join(args.out, file)
        save_safetensors(path, tensors, metadata)
        print(f"wrote {os.path.normpath(path)} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
