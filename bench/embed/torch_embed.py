"""PyTorch twin of `moco embed`: the pooled ResNet-50 features (2048-d) of every image of a folder,
decoded and preprocessed by torchvision's DataLoader, timed in images per second.

    python3 bench/embed/torch_embed.py IMAGES [-b 32] [-j 2] [--threads N] [--device cpu|cuda]
                                       [--precision fp32|tf32] [--seed 0] [--jit-optimize]

What it runs, as a PyTorch user would write it:
  - the images: IMAGES walked recursively, every .jpg/.jpeg/.png (case-insensitive), sorted by path
    (the order `moco embed` lists them in; it also takes .ppm .bmp .pgm .tif .tiff .webp, which the
    benchmark's folder does not hold);
  - a Dataset that opens each with PIL (convert("RGB")) and applies torchvision's Resize(256),
    CenterCrop(224), ToTensor, Normalize(ImageNet mean and std): `moco embed`'s evaluation view;
  - DataLoader(batch_size=B, num_workers=J, shuffle=False), otherwise its defaults (no pinned
    memory; each worker process runs with one intra-op thread, as PyTorch sets it);
  - torchvision.models.resnet50() (random weights, seeded) with fc = Identity, eval(), f32, NCHW
    (channels_last off, as our engine's layout), under torch.inference_mode(): PyTorch's fastest
    eager inference path (no autograd records, no version counters); our engine runs without
    autograd too;
  - torch.set_num_threads(--threads): the intra-op threads of the network, default os.cpu_count(),
    the same count as our engine's OpenMP (one per core); OpenMP's wait policy is the environment's
    (OMP_WAIT_POLICY, printed): embed_vs_torch.sh sets passive, the policy `moco` sets for itself;
  - --device cuda: the model and each batch on the GPU; --precision tf32 lets cuBLAS and cuDNN use
    TF32 (torch.backends.cuda.matmul.allow_tf32 and cudnn.allow_tf32), fp32 sets both False.
    cudnn.benchmark is left at PyTorch's default (False).
  - --jit-optimize (off by default; not what the comparison runs): the network through
    torch.jit.optimize_for_inference(torch.jit.script(model)) - frozen, BatchNorm folded into the
    convolutions, oneDNN weights prepacked on the CPU - run twice on a batch of zeros before the
    timed span (the profiling executor optimises on its first calls). PyTorch's own deployment path,
    measured to show how far PyTorch goes with it; our engine folds nothing.

The timed span is the one `moco embed` reports its img/s over (tools/cmd_embed.cpp): from the first
batch asked for (here: iter(loader), which starts the worker processes, so their start-up is in it,
as the first batch's decode is in the engine's) to the last batch's embeddings back in host memory.
The model's construction and the folder walk are outside it, on both sides. The last line:

    torch_embed: N images in S s = R img/s (batch B, workers J, threads T, cpu, fp32)
"""
import argparse
import os
import time

import PIL
import torch
import torchvision
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

EXTENSIONS = (".jpg", ".jpeg", ".png")


def list_images(root):
    paths = []
    for folder, _dirs, files in os.walk(root):
        paths.extend(os.path.join(folder, f) for f in files if f.lower().endswith(EXTENSIONS))
    return sorted(paths)


class ImageFiles(Dataset):
    def __init__(self, paths, transform):
        self.paths = paths
        self.transform = transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        with open(self.paths[i], "rb") as f:
            image = Image.open(f).convert("RGB")
        return self.transform(image)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", help="a folder of images, walked recursively")
    parser.add_argument("-b", "--batch-size", type=int, default=32)
    parser.add_argument("-j", "--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="fp32", choices=["fp32", "tf32"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jit-optimize", action="store_true",
                        help="torch.jit.optimize_for_inference(torch.jit.script(model)), warmed up untimed")
    args = parser.parse_args()
    if args.device == "cpu" and args.precision == "tf32":
        parser.error("--precision tf32 is a GPU math mode (TF32 tensor cores); the CPU runs fp32")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no GPU")

    tf32 = args.precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)

    paths = list_images(args.images)
    if not paths:
        raise SystemExit(f"{args.images}: no .jpg/.jpeg/.png below it")
    transform = transforms.Compose([
        transforms.Resize(256),
        transforms.CenterCrop(224),
        transforms.ToTensor(),
        transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ])
    loader = DataLoader(ImageFiles(paths, transform), batch_size=args.batch_size, num_workers=args.workers,
                        shuffle=False)
    model = torchvision.models.resnet50()
    model.fc = torch.nn.Identity()
    model = model.eval().to(device)
    if args.jit_optimize:
        with torch.no_grad():
            model = torch.jit.optimize_for_inference(torch.jit.script(model))
            zeros = torch.zeros(min(args.batch_size, len(paths)), 3, 224, 224, device=device)
            for _ in range(2):
                model(zeros)

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    print(f"torch {torch.__version__} torchvision {torchvision.__version__} PIL {PIL.__version__}; "
          f"intra-op threads {torch.get_num_threads()} (cpus {os.cpu_count()}); device {args.device}"
          f"{' ' + gpu if gpu else ''}; precision {args.precision} (TF32 {'on' if tf32 else 'off'} in cuBLAS "
          f"and cuDNN); cudnn.benchmark {torch.backends.cudnn.benchmark}; "
          f"OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    print(f"torch_embed: {len(paths)} images from {args.images}; resnet50 fc=Identity eval f32 NCHW, "
          f"{'torch.jit.optimize_for_inference, ' if args.jit_optimize else ''}inference_mode; DataLoader batch {args.batch_size} workers {args.workers}", flush=True)

    rows = []
    done = 0
    with torch.inference_mode():
        start = time.perf_counter()
        for batch in loader:
            features = model(batch.to(device))
            rows.append(features.cpu())  # on the GPU, this waits for the batch's work
            done += batch.shape[0]
        seconds = time.perf_counter() - start
    embeddings = torch.cat(rows)
    assert embeddings.shape == (len(paths), 2048), embeddings.shape
    assert torch.isfinite(embeddings).all()
    print(f"torch_embed: {done} images in {seconds:.2f} s = {done / seconds:.2f} img/s (batch {args.batch_size}, "
          f"workers {args.workers}, threads {torch.get_num_threads()}, {args.device}, {args.precision})", flush=True)


if __name__ == "__main__":
    main()
