#!/usr/bin/env python3
"""Converts a torchvision ResNet checkpoint (.pth) to safetensors with torchvision's key names, for
`moco pretrain --saliency pretrained:FILE` (the reference's localizer) and `moco masks --pretrained`.

Run it once, offline, where PyTorch is installed; the engine itself never needs Python:

    python3 tools/convert_torchvision_resnet.py resnet50-11ad3fa6.pth resnet50_v2.safetensors

The reference uses torchvision's ResNet50_Weights.IMAGENET1K_V2 (file resnet50-11ad3fa6.pth;
docs/METHOD.md 4.1), which `torchvision.models.resnet50(weights="IMAGENET1K_V2")` downloads into
~/.cache/torch/hub/checkpoints/. Any state dict with torchvision's names works (resnet18/34/50).
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import save_safetensors  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pth", help="a torchvision state dict (.pth)")
    parser.add_argument("out", help="the .safetensors file to write")
    args = parser.parse_args()
    state = torch.load(args.pth, map_location="cpu")
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if "conv1.weight" not in state:
        sys.exit(f"{args.pth}: no conv1.weight; expected a torchvision ResNet state dict")
    tensors = {name: value for name, value in state.items() if hasattr(value, "detach")}
    save_safetensors(args.out, tensors, {"source": os.path.basename(args.pth), "format": "torchvision resnet"})
    print(f"wrote {args.out}: {len(tensors)} tensors from {args.pth}")


if __name__ == "__main__":
    main()
