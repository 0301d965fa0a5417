#!/usr/bin/python3
"""Writes the LARS fixture that tests/ops/test_lars_step.cpp and tests/layers/test_optimizer.cpp check.

Run with Debian's Python, which has PyTorch; the tests themselves never need Python:

    /usr/bin/python3 tools/make_lars_fixtures.py     # writes tests/fixtures/optimizer/lars_steps.safetensors

It writes only that file (make_optimizer_fixtures.py writes the SGD and momentum ones).

The rule, SimCLR's LARS in the momentum form of its TensorFlow optimizer, written here in PyTorch
tensor ops, one parameter tensor (a segment of the flat buffer) at a time:
    adapted tensor:  g = grad + wd * w;  trust = eta * ||w|| / ||g|| if ||w|| > 0 and ||g|| > 0 else 1
    excluded tensor: g = grad;           trust = 1
    v = momentum * v + (lr * trust) * g;  w = w - v            (v starts at 0)
Excluded are the tensors with one dimension: BatchNorm's weight and bias, and biases.

The parameters are a small model's, in the order of its named_parameters() - the engine's
Sequential(Conv2d(3, 8, 3, bias=False), BatchNorm2d(8), Linear(8, 10)):
    0.weight (8, 3, 3, 3) adapted, 1.weight (8,) and 1.bias (8,) excluded, 2.weight (10, 8) adapted,
    2.bias (10,) excluded,
laid out in one flat buffer with each tensor starting at a multiple of 16 elements, as
Module::flatten_parameters() lays them out; the gaps hold the value 7 in the parameters and
gradients, which a correct step never reads nor changes. 5 steps, each with a new gradient and
learning rate, for two settings - "simclr" (momentum 0.9, weight decay 1e-6, eta 0.001: SimCLR's)
and "decay" (momentum 0.8, weight decay 0.05, eta 0.02: weight decay large enough to move the
trust ratios visibly) - each run in float64 and in float32 (the norms then in float32, as
TensorFlow computes them). Stored:
    params0 (n,) f32, grads (5, n) f32, lr (5,) f64; offsets, lengths, adapted (5,) i64;
    <setting>.<f32|f64>.params and <setting>.<f32|f64>.momentum (5, n): the state after each step.
The f64 runs start from the same f32 values, converted exactly.
"""
import argparse
import os

import torch

from safetensors_io import save_safetensors  # tools/safetensors_io.py, beside this script

TENSORS = (("0.weight", (8, 3, 3, 3)), ("1.weight", (8,)), ("1.bias", (8,)), ("2.weight", (10, 8)),
           ("2.bias", (10,)))
ALIGN = 16
GAP_VALUE = 7.0
STEPS = 5
LRS = (0.15, 0.3, 0.6, 0.45, 0.2)
SETTINGS = {
    "simclr": dict(momentum=0.9, weight_decay=1e-6, eta=0.001),
    "decay": dict(momentum=0.8, weight_decay=0.05, eta=0.02),
}


def layout():
    """(name, shape, offset, length, adapted) per tensor, and the buffer's length."""
    out, offset = [], 0
    for name, shape in TENSORS:
        length = 1
        for s in shape:
            length *= s
        out.append((name, shape, offset, length, len(shape) > 1))
        offset = (offset + length + ALIGN - 1) // ALIGN * ALIGN
    return out, out[-1][2] + out[-1][3]


def initial_values(gen, segments, n):
    """The model's parameters as torch initialises them (BatchNorm's perturbed so that its step
    is not the same for every channel), and gradients of a different scale per tensor and step."""
    params = torch.full((n,), GAP_VALUE)
    grads = torch.full((STEPS, n), GAP_VALUE)
    for name, shape, offset, length, adapted in segments:
        if name == "0.weight":  # Kaiming normal, fan_out
            value = torch.randn(length, generator=gen) * (2.0 / (shape[0] * 9)) ** 0.5
        elif name == "1.weight":
            value = 1.0 + 0.1 * torch.randn(length, generator=gen)
        elif name == "1.bias":
            value = 0.05 * torch.randn(length, generator=gen)
        else:  # Linear: uniform in +-1/sqrt(in)
            value = (torch.rand(length, generator=gen) * 2 - 1) / 8 ** 0.5
        params[offset:offset + length] = value
        scales = 10.0 ** (torch.rand(STEPS, 1, generator=gen) * 2 - 3)  # 1e-3 .. 1e-1 per step
        grads[:, offset:offset + length] = torch.randn(STEPS, length, generator=gen) * scales
    return params, grads


def lars_run(params0, grads, segments, setting, dtype):
    """The rule of the module docstring; returns the params and momentum after each step."""
    momentum, wd, eta = setting["momentum"], setting["weight_decay"], setting["eta"]
    w = params0.to(dtype).clone()
    v = torch.zeros_like(w)
    params_out, momentum_out = [], []
    for step in range(STEPS):
        lr = LRS[step]
        grad = grads[step].to(dtype)
        for _, _, offset, length, adapted in segments:
            part = slice(offset, offset + length)
            p, g = w[part], grad[part]
            if adapted:
                g = g + wd * p
                w_norm, g_norm = torch.linalg.norm(p), torch.linalg.norm(g)
                trust = eta * w_norm / g_norm if w_norm > 0 and g_norm > 0 else torch.tensor(1.0, dtype=dtype)
            else:
                trust = torch.tensor(1.0, dtype=dtype)
            v[part] = momentum * v[part] + (lr * trust) * g
            w[part] = p - v[part]
        params_out.append(w.clone())
        momentum_out.append(v.clone())
    return torch.stack(params_out), torch.stack(momentum_out)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "optimizer"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(20261206)
    segments, n = layout()
    params0, grads = initial_values(gen, segments, n)
    tensors = {
        "params0": params0,
        "grads": grads,
        "lr": torch.tensor(LRS, dtype=torch.float64),
        "offsets": torch.tensor([s[2] for s in segments], dtype=torch.int64),
        "lengths": torch.tensor([s[3] for s in segments], dtype=torch.int64),
        "adapted": torch.tensor([int(s[4]) for s in segments], dtype=torch.int64),
    }
    for name, setting in SETTINGS.items():
        for dtype, tag in ((torch.float32, "f32"), (torch.float64, "f64")):
            params, momentum = lars_run(params0, grads, segments, setting, dtype)
            tensors[f"{name}.{tag}.params"] = params
            tensors[f"{name}.{tag}.momentum"] = momentum
    metadata = {"torch": torch.__version__, "n": n, "steps": STEPS, "lrs": ",".join(map(str, LRS)),
                "names": ",".join(s[0] for s in segments)}
    for name, setting in SETTINGS.items():
        metadata[name] = ",".join(f"{k}={v}" for k, v in setting.items())
    path = os.path.join(args.out, "lars_steps.safetensors")
    save_safetensors(path, tensors, metadata)
    print(f"wrote {os.path.normpath(path)} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
