#!/usr/bin/python3
"""Writes the ResNet reference fixtures that tests/layers/test_resnet_fixtures.cpp checks against.

Run with Debian's Python, which has PyTorch and torchvision (apt-get install python3-torch
python3-torchvision); the tests themselves never need Python:

    /usr/bin/python3 tools/make_resnet_fixtures.py            # rewrites tests/fixtures/
    /usr/bin/python3 tools/make_resnet_fixtures.py --check-engine-weights W.safetensors --arch resnet50

Weights and inputs are not stored: every value comes from a hash of (tensor name, element index)
that the C++ test recomputes bit for bit (fixture_value below; tests/layers/fixture_weights.cpp).
What is stored is what PyTorch computed from them, small enough to commit:
  - resnet_keys.txt: every state-dict key of torchvision's resnet18/34/50 (1000 classes) with
    shape and dtype, in order;
  - resnet{18,50}_64px.safetensors: for a model with 10 classes on a batch of two 64x64 images,
    all computed in float64 and stored as f32 (scalars as f64): eval logits; the sum and norm of every module's output in eval mode; train-mode logits;
    the gradient of sum(logits * loss_weight) for every small parameter and the norm of every
    parameter's gradient; all BatchNorm running statistics after three training-mode forwards.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np
import torch
import torchvision

from safetensors_io import save_safetensors  # tools/safetensors_io.py, beside this script

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
SMALL = 10000  # parameters up to this many elements have their full gradient stored
ARCHS = ("resnet18", "resnet34", "resnet50")


def fnv1a64(text):
    h = 0xCBF29CE484222325
    for byte in text.encode():
        h = ((h ^ byte) * 0x100000001B3) & MASK
    return h


def fixture_uniform(name, n):
    """u in [0, 1) for elements 0..n-1 of tensor `name`: splitmix64 of fnv1a64(name) + (i+1) golden."""
    i = np.arange(1, n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(fnv1a64(name)) + i * np.uint64(GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (2.0 ** -53)


def is_batchnorm(name):
    module = name.rsplit(".", 1)[0].split(".")[-1]
    return module.startswith("bn") or name.rsplit(".", 1)[0].endswith("downsample.1")


def fixture_value(name, shape):
    """The value of state-dict entry `name` (float64 before the cast to the tensor's dtype)."""
    n = int(np.prod(shape)) if len(shape) else 1
    u = fixture_uniform(name, n)
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "num_batches_tracked":
        return np.zeros(n)
    if leaf == "running_mean":
        return 0.2 * u - 0.1
    if leaf == "running_var":
        return 0.5 + u
    if is_batchnorm(name):
        return 0.5 + u if leaf == "weight" else 0.2 * u - 0.1
    if len(shape) == 4:  # convolution: He uniform over fan_in
        bound = np.sqrt(6.0 / float(shape[1] * shape[2] * shape[3]))
        return (2.0 * u - 1.0) * bound
    if name == "fc.weight":
        return (2.0 * u - 1.0) / np.sqrt(float(shape[1]))
    if name == "fc.bias":
        return (2.0 * u - 1.0) * 0.1
    if name.startswith("input") or name == "loss_weight":
        return 2.0 * u - 1.0
    raise ValueError(f"no fixture rule for {name} {shape}")


def fixture_tensor(name, shape, dtype=torch.float32):
    return torch.from_numpy(fixture_value(name, tuple(shape)).reshape(tuple(shape))).to(dtype)


def load_safetensors(path):
    kinds = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "BF16": None}
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        kind = kinds[info["dtype"]]
        out[name] = torch.from_numpy(np.frombuffer(data[begin:end], dtype=kind).copy().reshape(info["shape"]))
    return out


def fixture_state_dict(model):
    return {k: fixture_tensor(k, v.shape, v.dtype) for k, v in model.state_dict().items()}


def reference(arch, size=64, batch=2, classes=10):
    """Computed in float64 (the ground truth for the engine's f64 and f32 runs), stored as f32."""
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(num_classes=classes)
    model.load_state_dict(fixture_state_dict(model), strict=True)
    model.double()
    inputs = [fixture_tensor(f"input{k}", (batch, 3, size, size), torch.float64) for k in range(3)]
    out = {"input0": inputs[0].float()}

    stats = {}
    def hook(path):
        def record(module, args, output):
            stats[path] = output.detach().clone()  # torchvision's ReLU(inplace=True) would change it
        return record
    handles = [m.register_forward_hook(hook(p)) for p, m in model.named_modules()
               if p and not isinstance(m, torch.nn.ReLU)]
    model.eval()
    with torch.no_grad():
        out["eval.logits"] = model(inputs[0]).float()
    for h in handles:
        h.remove()
    for path, value in stats.items():
        out[f"eval.sum.{path}"] = value.sum()
        out[f"eval.norm.{path}"] = value.norm()

    # The loss weights every logit differently: with sum(logits), every sample and position would
    # get the same gradient, which train-mode BatchNorm cancels almost exactly, leaving rounding noise.
    model.train()
    logits = model(inputs[0])
    (logits * fixture_tensor("loss_weight", tuple(logits.shape), torch.float64)).sum().backward()
    out["train.logits"] = logits.detach().float()
    for name, p in model.named_parameters():
        if p.numel() <= SMALL:
            out[f"grad.{name}"] = p.grad.detach().float()
        out[f"gradnorm.{name}"] = p.grad.detach().double().norm()
    with torch.no_grad():
        model(inputs[1])
        model(inputs[2])
    for name, b in model.named_buffers():
        if name.endswith("running_mean") or name.endswith("running_var"):
            out[f"after3.{name}"] = b.detach().float()
        if name == "bn1.num_batches_tracked":
            out["after3.bn1.num_batches_tracked"] = b.detach().clone()
    return out


def write_fixtures(folder):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "resnet_keys.txt"), "w") as f:
        f.write("# torchvision state-dict keys: arch name shape dtype (tools/make_resnet_fixtures.py)\n")
        for arch in ARCHS:
            for name, t in getattr(torchvision.models, arch)().state_dict().items():
                f.write(f"{arch} {name} {'x'.join(map(str, t.shape)) or 'scalar'} {str(t.dtype).split('.')[-1]}\n")
    meta = {"torch": torch.__version__, "torchvision": torchvision.__version__, "size": "64", "batch": "2",
            "classes": "10", "script": "tools/make_resnet_fixtures.py"}
    for arch in ("resnet18", "resnet50"):
        path = os.path.join(folder, f"{arch}_64px.safetensors")
        save_safetensors(path, reference(arch), dict(meta, arch=arch))
        print(f"wrote {path} ({os.path.getsize(path) / 1024:.0f} KiB)")


def check_engine_weights(path, arch):
    """Loads a state dict written by the engine into torchvision with strict=True and runs it."""
    state = load_safetensors(path)
    fc = state["fc.weight"]
    model = getattr(torchvision.models, arch)(num_classes=fc.shape[0])
    model.load_state_dict(state, strict=True)
    model.eval()
    with torch.no_grad():
        logits = model(fixture_tensor("input0", (2, 3, 224, 224)))
    print(f"{path}: loaded into torchvision.models.{arch}() with strict=True; "
          f"{len(state)} tensors; logits {tuple(logits.shape)}, finite: {bool(torch.isfinite(logits).all())}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures"))
    parser.add_argument("--check-engine-weights", metavar="FILE")
    parser.add_argument("--arch", default="resnet50", choices=ARCHS)
    parser.add_argument("--write-torchvision-weights", metavar="FILE",
                        help="write torchvision's own initialisation of --arch as safetensors (for the engine to load)")
    args = parser.parse_args()
    if args.check_engine_weights:
        check_engine_weights(args.check_engine_weights, args.arch)
    elif args.write_torchvision_weights:
        torch.manual_seed(0)
        model = getattr(torchvision.models, args.arch)()
        save_safetensors(args.write_torchvision_weights, dict(model.state_dict()), {"arch": args.arch})
        print(f"wrote {args.write_torchvision_weights}")
    else:
        write_fixtures(os.path.abspath(args.out))


if __name__ == "__main__":
    sys.exit(main())
