#!/usr/bin/python3
"""Checks a `moco export` file on the PyTorch side: what a user of torchvision or detectron2 sees.

Run with Debian's Python, which has PyTorch and torchvision (apt-get install python3-torch
python3-torchvision); the tests never need it:

    build/tools/moco export CKPT --format torchvision --out r50.safetensors
    /usr/bin/python3 tools/check_export.py r50.safetensors [--moco build/tools/moco] [--size 64 --batch 2]
    build/tools/moco export CKPT --format detectron2 --out r50_d2.safetensors
    /usr/bin/python3 tools/check_export.py r50_d2.safetensors

A torchvision export (keys without "stem."/"res2.") is loaded into torchvision.models.resnet18/34/50()
(picked from its keys) with strict=False, as MoCo's main_lincls.py loads MoCo's encoder_q: the only
missing keys must be fc.weight and fc.bias, and nothing may be unexpected. A small-stem export gets
the change `moco export` warns about (conv1 3x3 stride 1, no max-pool); another width than 64 cannot
be built by torchvision and is refused here. Then the pooled features (model.fc = Identity, eval,
no_grad, float32) are compared with the engine's on the same preprocessed input: the input is
written to a safetensors file, and `moco inspect --weights EXPORT --input X --dump D` (the engine's
command that records every module's output) computes the engine's; its "avgpool" output is read
back. PyTorch's float64 run of the same weights is printed beside both, so the engine's f32 error
can be read against PyTorch's own.

A detectron2 export is checked against MoCo's conversion rule, written here from the rule's text
(moco/detection/convert-pretrain-to-detectron2.py): the names must be exactly the rule applied to
torchvision's backbone keys (all but fc.*), in torchvision's order, with torchvision's shapes, and
the metadata must carry __author__ = MOCO and matching_heuristics = True. The lines of README
"Exporting the backbone" that write the pickle detectron2 reads are run and the pickle read back.
"""
import argparse
import os
import pickle
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import load_safetensors, save_safetensors  # noqa: E402  tools/, beside this script

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOLERANCE = 1e-4  # relative L2 error of f32 pooled features (tests/layers/test_resnet_fixtures.cpp's f32 bound)


def fail(message):
    sys.exit(f"check_export: FAIL: {message}")


def read(path):
    """{name: torch tensor} in the file's order, and its metadata."""
    arrays, metadata = load_safetensors(path)
    return {name: torch.from_numpy(a) for name, a in arrays.items()}, metadata


def arch_of(names):
    if "layer1.0.conv3.weight" in names:
        return "resnet50"
    return "resnet34" if "layer3.5.conv1.weight" in names else "resnet18"


def torchvision_model(arch, conv1):
    """torchvision's model for an export whose conv1.weight is `conv1` (small stem: 3x3)."""
    width, kernel = conv1.shape[0], conv1.shape[2]
    if width != 64:
        fail(f"the export has width {width}; torchvision.models.{arch}() is built with width 64 only "
             "(moco export warned about this)")
    model = getattr(torchvision.models, arch)()
    if kernel == 3:  # the change moco export's warning names
        model.conv1 = torch.nn.Conv2d(3, width, 3, 1, 1, bias=False)
        model.maxpool = torch.nn.Identity()
    return model


def mocos_detectron2_rule(key):
    """MoCo's convert-pretrain-to-detectron2.py, applied to a key with the encoder prefix removed."""
    if "layer" not in key:
        key = "stem." + key
    for t in [1, 2, 3, 4]:
        key = key.replace(f"layer{t}", f"res{t + 1}")
    for t in [1, 2, 3]:
        key = key.replace(f"bn{t}", f"conv{t}.norm")
    key = key.replace("downsample.0", "shortcut")
    return key.replace("downsample.1", "shortcut.norm")


def engine_features(moco, export, arch, x):
    """The engine's pooled features of x (N, 3, H, W) through `moco inspect`."""
    with tempfile.TemporaryDirectory() as tmp:
        given, dump = os.path.join(tmp, "input.safetensors"), os.path.join(tmp, "dump.safetensors")
        save_safetensors(given, {"input": x}, {"script": "tools/check_export.py"})
        command = [moco, "inspect", "--arch", arch, "--weights", export, "--input", given, "--dump", dump,
                   "--device", "cpu"]
        run = subprocess.run(command, capture_output=True, text=True)
        if run.returncode != 0:
            fail(f"{' '.join(command)} failed:\n{run.stdout}{run.stderr}")
        outputs, _ = read(dump)
    return outputs["avgpool"].reshape(x.shape[0], -1)


def relative_error(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


def check_torchvision(path, state, metadata, args):
    arch = arch_of(state)
    model = torchvision_model(arch, state["conv1.weight"])
    missing, unexpected = model.load_state_dict(state, strict=False)
    print(f"torchvision.models.{arch}().load_state_dict(load_file({os.path.basename(path)}), strict=False):")
    print(f"  missing {missing}")
    print(f"  unexpected {unexpected}")
    if missing != ["fc.weight", "fc.bias"] or unexpected != []:
        fail("expected missing ['fc.weight', 'fc.bias'] and unexpected []")
    for name, t in state.items():
        if t.dtype != (torch.int64 if name.endswith("num_batches_tracked") else torch.float32):
            fail(f"{name} is {t.dtype}")
    print(f"  {len(state)} tensors, floats float32 and counters int64; metadata: arch {metadata.get('arch')}, "
          f"source {metadata.get('source')}")

    torch.manual_seed(args.seed)
    x = torch.randn(args.batch, 3, args.size, args.size)  # an already normalised input
    model.fc = torch.nn.Identity()
    model.eval()
    with torch.no_grad():
        theirs = model(x)
        truth = model.double()(x.double())
    ours = engine_features(args.moco, path, arch, x)
    if ours.shape != theirs.shape:
        fail(f"the engine's features are {tuple(ours.shape)}, PyTorch's {tuple(theirs.shape)}")
    engine_vs_torch = relative_error(ours, theirs)
    print(f"pooled features {tuple(theirs.shape)} of a ({args.batch}, 3, {args.size}, {args.size}) input "
          f"(torch.randn, seed {args.seed}), eval mode:")
    print(f"  engine f32 vs PyTorch f32: relative L2 {engine_vs_torch:.3e}, max |diff| "
          f"{float((ours - theirs).abs().max()):.3e} (feature RMS {float(theirs.pow(2).mean().sqrt()):.3e})")
    print(f"  engine f32 vs PyTorch f64: relative L2 {relative_error(ours, truth):.3e}; "
          f"PyTorch f32 vs PyTorch f64: {relative_error(theirs, truth):.3e}")
    if not engine_vs_torch <= TOLERANCE:
        fail(f"the engine's features differ from PyTorch's by {engine_vs_torch:.3e} > {TOLERANCE}")


def check_detectron2(path, state, metadata):
    names = list(state)
    backbone = {k: v for k, v in state.items() if not k.startswith("stem.fc.")}
    arch = "resnet50" if "res2.0.conv3.weight" in backbone else (
        "resnet34" if "res4.5.conv1.weight" in backbone else "resnet18")
    reference = getattr(torchvision.models, arch)().state_dict()
    expected = [mocos_detectron2_rule(k) for k in reference if not k.startswith("fc.")]
    print(f"detectron2 names of {os.path.basename(path)} against MoCo's rule on torchvision.models.{arch}()'s keys:")
    if names != expected:
        extra, absent = sorted(set(names) - set(expected)), sorted(set(expected) - set(names))
        fail(f"the names differ: not expected {extra[:5]}, absent {absent[:5]}"
             + ("" if extra or absent else " (the same names in another order)"))
    print(f"  all {len(names)} names equal, in order (first {names[0]}, last {names[-1]}); no stem.fc.*")
    shapes = {mocos_detectron2_rule(k): tuple(v.shape) for k, v in reference.items()}
    stem = tuple(state["stem.conv1.weight"].shape)
    odd = [n for n in names if tuple(state[n].shape) != shapes[n] and n != "stem.conv1.weight"]
    if odd or stem[0] != 64:
        fail(f"shapes differ from torchvision's {arch}: {odd[:5]} (stem {stem})")
    print(f"  shapes are torchvision's (stem.conv1.weight {stem})")
    for key, value in (("__author__", "MOCO"), ("matching_heuristics", "True")):
        if metadata.get(key) != value:
            fail(f"metadata {key} is {metadata.get(key)!r}, expected {value!r}")
    print("  metadata __author__ = MOCO, matching_heuristics = True")

    # README's lines: the pickle detectron2's DetectionCheckpointer reads, as MoCo's script writes it.
    with tempfile.TemporaryDirectory() as tmp:
        pkl = os.path.join(tmp, "backbone.pkl")
        model = {k: v.numpy() for k, v in state.items()}
        with open(pkl, "wb") as f:
            pickle.dump({"model": model, "__author__": "MOCO", "matching_heuristics": True}, f)
        with open(pkl, "rb") as f:
            back = pickle.load(f)
    if list(back["model"]) != names or not all(np.array_equal(back["model"][k], model[k]) for k in names):
        fail("the pickle does not hold the export's tensors")
    print(f"  README's pickle lines: {len(back['model'])} numpy arrays under 'model', "
          f"__author__ {back['__author__']}, matching_heuristics {back['matching_heuristics']}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export", help="a file written by `moco export`")
    parser.add_argument("--moco", default=os.path.join(REPO, "build", "tools", "moco"),
                        help="the moco binary that computes the engine's features")
    parser.add_argument("--size", type=int, default=64, help="input side in pixels")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    state, metadata = read(args.export)
    print(f"{args.export}: {len(state)} tensors; torch {torch.__version__}, torchvision {torchvision.__version__}")
    if "stem.conv1.weight" in state:
        check_detectron2(args.export, state, metadata)
    elif "conv1.weight" in state:
        check_torchvision(args.export, state, metadata, args)
    else:
        fail(f"{args.export}: neither conv1.weight (torchvision) nor stem.conv1.weight (detectron2); not an export")
    print("check_export: PASS")


if __name__ == "__main__":
    main()
