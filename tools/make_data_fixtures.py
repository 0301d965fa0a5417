#!/usr/bin/python3
"""Writes the image-pipeline reference fixtures that the data tests check our C++ decoding and
transforms against (PIL and torchvision are the reference, as MoCo's data loader uses them).

Run from the repository root with Debian's Python, which has Pillow and torchvision
(apt-get install python3-pil python3-torchvision); the tests themselves never need Python:

    /usr/bin/python3 tools/make_data_fixtures.py             # rewrites tests/fixtures/data/
    /usr/bin/python3 tools/make_data_fixtures.py --out DIR   # somewhere else

Re-running gives the same bytes (with the same Pillow/libjpeg/zlib). It writes into
tests/fixtures/data/:
  - baseline.jpg (q90, 4:2:0), progressive.jpg (q85), q444.jpg (q95, 4:4:4), gray.jpg (L, q90),
    cmyk.jpg (q90; CMYK made from `src` with half of the gray component moved to K, so that the
    CMYK -> RGB formula is exercised with K != 0), rgba.png (alpha varying), gray16.png (16-bit
    gray; see below) and big.jpg (320x240 bilinear resize of `src`, q90) - all from one
    deterministic 61x47 RGB source image `src`;
  - pil_reference.safetensors: what PIL/torchvision computed (uint8 images are HWC as
    np.array(pil_image); "__metadata__" names the generator and library versions):
      src; decoded_<file> = np.array(Image.open(file).convert("RGB")) for every file above
        (note decoded_gray16_png: PIL opens a 16-bit gray PNG as mode "I" and its I -> RGB
        conversion clamps each value to 255, it does not scale 65535 down to 255), and
        decoded_big_reduce{2,4,8}, big.jpg decoded by libjpeg at 1/2, 1/4, 1/8 scale (PIL's
        Image.draft; ceil(W / n) x ceil(H / n));
      resized_crop_cases (k, 6) I32 rows (top, left, height, width, out_w, out_h) and
        resized_crop_<i> = src.crop(box).resize((out_w, out_h), BILINEAR), equal to
        torchvision's resized_crop (asserted);
      resize_shorter_{30,100} = TF.resize(src, n), center_crop_30 = TF.center_crop(resize 30, 30);
      {brightness,contrast,saturation,hue}_factors (F32) and <op>_<i> = TF.adjust_<op>(src, f),
        f passed as the float32 value stored;
      grayscale (3 channels), hflip, normalized (3, 47, 61) F32 = normalize(to_tensor(src), ImageNet);
      blur_sigmas (F32) and blur_<i> = src.filter(ImageFilter.GaussianBlur(sigma)) (MoCo's blur);
      jitter_order (I32, 0 brightness 1 contrast 2 saturation 3 hue), jitter_factors (F32, in the
        order brightness, contrast, saturation, hue) and jitter_composite, the ops applied in
        jitter_order;
      rrc_stats_<W>x<H> (F64): 20000 draws of torchvision's RandomResizedCrop.get_params(scale
        (0.2, 1), ratio (3/4, 4/3)) after torch.manual_seed(0): [mean w, mean h, std w, std h
        (population), mean top, mean left, fraction of draws equal to the fallback box, mean
        w*h/(W*H)]; rrc_fallback_<W>x<H> (I32) = (top, left, h, w) of the fallback box (what
        get_params returns after 10 rejected draws).
It also checks and prints a few hand-computed METHOD.md vectors (luma, blur, hue) and how PIL converts
CMYK to RGB; these are not stored.
"""
import argparse
import io
import math
import os
import struct
import sys
import zlib

import numpy as np
import PIL
import torch
import torchvision
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image, ImageFilter

from safetensors_io import save_safetensors  # tools/safetensors_io.py, beside this script

WIDTH, HEIGHT = 61, 47
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]

RESIZED_CROP_CASES = [  # top, left, height, width, out_w, out_h
    (5, 7, 30, 40, 24, 24),      # downscale both ways
    (0, 0, 47, 61, 96, 96),      # upscale the whole image, aspect changed
    (3, 2, 20, 50, 32, 20),      # width down, height same
    (10, 10, 17, 13, 17, 13),    # identity size: a plain crop
    (0, 0, 47, 61, 61, 23),      # vertical only
    (1, 1, 40, 30, 200, 40),     # strong horizontal upscale
    (20, 30, 27, 31, 7, 5),      # strong downscale from the bottom-right corner
    (0, 60, 47, 1, 3, 47),       # one column stretched
]
BRIGHTNESS = [0.0, 0.55, 1.0, 1.3, 1.4]
CONTRAST = [0.0, 0.6, 1.37, 1.4]
SATURATION = [0.0, 0.6, 1.25, 1.4]
HUE = [-0.5, -0.1, -0.037, 0.0, 0.05, 0.1, 0.5]
BLUR_SIGMAS = [0.1, 0.5, 1.0, 1.5, 2.0, 1.2345]
JITTER_ORDER = [3, 1, 0, 2]
JITTER_FACTORS = [1.21, 0.73, 1.33, -0.07]  # brightness, contrast, saturation, hue
RRC_SIZES = [(500, 375), (100, 500), (500, 100), (64, 64)]
RRC_DRAWS = 20000
RRC_SCALE, RRC_RATIO = (0.2, 1.0), (3.0 / 4.0, 4.0 / 3.0)


def f32(values):
    return np.asarray(values, dtype=np.float32)


def source_image():
    """61x47 RGB: smooth gradients, saturated patches with sharp edges, a gray ramp, a disc, noise."""
    rng = np.random.default_rng(20240601)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    img = np.empty((HEIGHT, WIDTH, 3), dtype=np.float64)
    img[..., 0] = 30 + 200 * x / (WIDTH - 1)                            # red grows to the right
    img[..., 1] = 220 - 180 * y / (HEIGHT - 1)                          # green fades downwards
    img[..., 2] = 128 + 100 * np.sin(x / 7.0) * np.cos(y / 5.0)         # blue waves
    # A disc of warm orange with a hard edge, and a soft sky-blue blob.
    disc = (x - 44) ** 2 + (y - 14) ** 2 <= 9 ** 2
    img[disc] = (250, 140, 20)
    blob = np.exp(-((x - 14) ** 2 + (y - 33) ** 2) / 60.0)[..., None]
    img = img * (1 - blob) + np.array([90, 170, 250]) * blob
    # Saturated patches (pure and secondary colours, ties between the top channels).
    patches = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255),
               (200, 30, 30), (30, 200, 30), (30, 30, 200), (180, 180, 40)]
    for k, colour in enumerate(patches):
        r0, c0 = 2 + 4 * (k // 5), 2 + 4 * (k % 5)
        img[r0:r0 + 4, c0:c0 + 4] = colour
    # Noise on the lower-right quarter.
    noisy = (slice(HEIGHT // 2, HEIGHT), slice(WIDTH // 2, WIDTH))
    img[noisy] += rng.normal(0.0, 18.0, size=img[noisy].shape)
    # A gray ramp (R = G = B), with black and white ends, across the bottom rows.
    ramp = np.round(np.linspace(0, 255, WIDTH))
    img[HEIGHT - 4:HEIGHT - 1, :, :] = ramp[None, :, None]
    # A few gray pixels in the middle of the colour, and a thin diagonal line.
    img[20, 5:12] = 128
    for t in range(12):
        img[10 + t, 25 + t] = (20, 20, 20)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def cmyk_from_rgb(rgb):
    """CMYK with half of the gray component moved to K (PIL's own RGB -> CMYK leaves K = 0)."""
    cmy = 255 - rgb.astype(np.int32)
    k = cmy.min(axis=2) // 2
    cmyk = np.concatenate([cmy - k[..., None], k[..., None]], axis=2)
    return Image.fromarray(cmyk.astype(np.uint8), "CMYK")


def write_images(folder, src_pil):
    """The encoded files; returns {file name: path}."""
    files = {}

    def save(name, image, **kwargs):
        path = os.path.join(folder, name)
        buf = io.BytesIO()
        image.save(buf, **kwargs)
        with open(path, "wb") as f:
            f.write(buf.getvalue())
        files[name] = path

    save("baseline.jpg", src_pil, format="JPEG", quality=90)
    save("progressive.jpg", src_pil, format="JPEG", quality=85, progressive=True)
    save("q444.jpg", src_pil, format="JPEG", quality=95, subsampling=0)
    save("gray.jpg", src_pil.convert("L"), format="JPEG", quality=90)
    save("cmyk.jpg", cmyk_from_rgb(np.array(src_pil)), format="JPEG", quality=90)
    alpha = np.clip(np.round(255 * (np.arange(WIDTH)[None, :] / (WIDTH - 1)) *
                             (0.5 + 0.5 * np.cos(np.arange(HEIGHT)[:, None] / 6.0))), 0, 255).astype(np.uint8)
    save("rgba.png", Image.fromarray(np.dstack([np.array(src_pil), alpha]), "RGBA"), format="PNG")
    gray16 = (np.array(src_pil.convert("L")).astype(np.uint32) * 257).astype(np.uint16)
    save("gray16.png", Image.fromarray(gray16, "I;16"), format="PNG")
    save("big.jpg", src_pil.resize((320, 240), Image.BILINEAR), format="JPEG", quality=90)
    path = os.path.join(folder, "rgb16_gamma.png")
    with open(path, "wb") as f:
        f.write(rgb16_png_with_gamma(np.array(src_pil)))
    files["rgb16_gamma.png"] = path
    return files


def rgb16_png_with_gamma(rgb8):
    """A 16-bit RGB PNG with a gAMA chunk of 1.0, built chunk by chunk (PIL cannot write 16-bit RGB):
    PIL reads the high byte of each sample and ignores gAMA, which a gamma-converting reader would not."""
    height, width, _ = rgb8.shape
    samples = rgb8.astype(np.uint16) * 256 + np.uint16(0x5A)  # low byte must not matter
    raw = b"".join(b"\x00" + samples[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)) +
            chunk(b"gAMA", struct.pack(">I", 100000)) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def decoded(path):
    with Image.open(path) as im:
        return np.array(im.convert("RGB"))


def decoded_draft(path, reduce):
    with Image.open(path) as im:
        w, h = im.size
        im.draft("RGB", ((w + reduce - 1) // reduce, (h + reduce - 1) // reduce))
        out = np.array(im.convert("RGB"))
    assert out.shape[:2] == ((h + reduce - 1) // reduce, (w + reduce - 1) // reduce), (reduce, out.shape)
    return out


def rrc_fallback(width, height, ratio=RRC_RATIO):
    """torchvision's central crop after 10 rejected draws: (top, left, h, w)."""
    in_ratio = float(width) / float(height)
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def rrc_stats(width, height):
    dummy = Image.new("RGB", (width, height))
    torch.manual_seed(0)
    draws = np.array([T.RandomResizedCrop.get_params(dummy, scale=list(RRC_SCALE), ratio=list(RRC_RATIO))
                      for _ in range(RRC_DRAWS)], dtype=np.float64)  # rows (top, left, h, w)
    fallback = rrc_fallback(width, height)
    top, left, h, w = draws.T
    is_fallback = np.all(draws == np.array(fallback, dtype=np.float64), axis=1)
    stats = [w.mean(), h.mean(), w.std(), h.std(), top.mean(), left.mean(), is_fallback.mean(),
             (w * h / (width * height)).mean()]
    return np.array(stats, dtype=np.float64), np.array(fallback, dtype=np.int32)


def references(src_pil, files):
    src = np.array(src_pil)
    out = {"src": src}
    for name in ["baseline.jpg", "progressive.jpg", "q444.jpg", "gray.jpg", "cmyk.jpg", "rgba.png", "gray16.png",
                 "big.jpg", "rgb16_gamma.png"]:
        stem, ext = name.rsplit(".", 1)
        out[f"decoded_{stem}" + ("_png" if ext == "png" else "")] = decoded(files[name])
    for reduce in (2, 4, 8):
        out[f"decoded_big_reduce{reduce}"] = decoded_draft(files["big.jpg"], reduce)

    out["resized_crop_cases"] = np.array(RESIZED_CROP_CASES, dtype=np.int32)
    for i, (top, left, height, width, out_w, out_h) in enumerate(RESIZED_CROP_CASES):
        ours = np.array(src_pil.crop((left, top, left + width, top + height)).resize((out_w, out_h), Image.BILINEAR))
        tv = np.array(TF.resized_crop(src_pil, top, left, height, width, [out_h, out_w]))
        assert np.array_equal(ours, tv), f"resized_crop case {i} differs from torchvision"
        out[f"resized_crop_{i}"] = ours

    out["resize_shorter_30"] = np.array(TF.resize(src_pil, 30))
    out["center_crop_30"] = np.array(TF.center_crop(TF.resize(src_pil, 30), 30))
    out["resize_shorter_100"] = np.array(TF.resize(src_pil, 100))

    ops = {"brightness": (BRIGHTNESS, TF.adjust_brightness), "contrast": (CONTRAST, TF.adjust_contrast),
           "saturation": (SATURATION, TF.adjust_saturation), "hue": (HUE, TF.adjust_hue)}
    for op, (factors, fn) in ops.items():
        factors = f32(factors)
        out[f"{op}_factors"] = factors
        for i, f in enumerate(factors):
            out[f"{op}_{i}"] = np.array(fn(src_pil, float(f)))

    out["grayscale"] = np.array(TF.rgb_to_grayscale(src_pil, num_output_channels=3))

    sigmas = f32(BLUR_SIGMAS)
    out["blur_sigmas"] = sigmas
    for i, s in enumerate(sigmas):
        out[f"blur_{i}"] = np.array(src_pil.filter(ImageFilter.GaussianBlur(radius=float(s))))

    out["hflip"] = np.array(TF.hflip(src_pil))
    out["normalized"] = TF.normalize(TF.to_tensor(src_pil), IMAGENET_MEAN, IMAGENET_STD).numpy().astype(np.float32)

    jitter = f32(JITTER_FACTORS)
    fns = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    img = src_pil
    for op in JITTER_ORDER:
        img = fns[op](img, float(jitter[op]))
    out["jitter_order"] = np.array(JITTER_ORDER, dtype=np.int32)
    out["jitter_factors"] = jitter
    out["jitter_composite"] = np.array(img)

    for width, height in RRC_SIZES:
        stats, fallback = rrc_stats(width, height)
        out[f"rrc_stats_{width}x{height}"] = stats
        out[f"rrc_fallback_{width}x{height}"] = fallback
    return out


def check_spec_vectors():
    """Hand-computed values from METHOD.md, checked against PIL; returns True when all hold."""
    ok = True

    def report(what, got, want):
        nonlocal ok
        good = list(got) == list(want)
        ok &= good
        print(f"  {'ok ' if good else 'BAD'} {what}: {list(got)}" + ("" if good else f" (METHOD.md: {list(want)})"))

    print("METHOD.md vectors:")
    for rgb, want in [((255, 0, 0), 76), ((0, 255, 0), 150), ((0, 0, 255), 29), ((10, 200, 30), 124)]:
        report(f"luma{rgb}", [Image.new("RGB", (1, 1), rgb).convert("L").getpixel((0, 0))], [want])
    impulse = np.zeros((15, 15, 3), dtype=np.uint8)
    impulse[7, 7] = 255
    blurred = np.array(Image.fromarray(impulse).filter(ImageFilter.GaussianBlur(radius=1.0)))
    report("blur sigma 1 row 7", blurred[7, :, 0], [0, 0, 0, 0, 1, 6, 24, 42, 24, 6, 1, 0, 0, 0, 0])
    report("blur sigma 1 column 7", blurred[:, 7, 0], [0, 0, 0, 0, 0, 6, 24, 42, 24, 6, 0, 0, 0, 0, 0])
    report("adjust_hue(+0.1) of (200, 100, 50)",
           TF.adjust_hue(Image.new("RGB", (1, 1), (200, 100, 50)), 0.1).getpixel((0, 0)), (200, 188, 50))
    hue_shift = {float(f): int(np.uint8(float(f) * 255)) for f in f32(HUE + [JITTER_FACTORS[3]])}
    print(f"  hue factor -> uint8 added to PIL's H channel (np.uint8(f * 255)): {hue_shift}")
    return ok


def check_cmyk(files):
    print("CMYK -> RGB in this Pillow:")
    probe = Image.frombytes("CMYK", (4, 1), bytes([100, 50, 0, 100, 0, 0, 0, 200, 200, 150, 100, 60, 255, 0, 0, 255]))
    probe_rgb = list(probe.convert("RGB").getdata())
    old = [tuple(255 - min(255, c + k) for c in px[:3]) for px, k in ((p, p[3]) for p in probe.getdata())]

    def muldiv255(a, b):
        t = a * b + 128
        return (t + (t >> 8)) >> 8

    new = [tuple((255 - p[3]) - muldiv255(c, 255 - p[3]) for c in p[:3]) for p in probe.getdata()]
    kind = "new (nk - MULDIV255(c, nk))" if probe_rgb == new else ("old (255 - min(255, c + k))" if probe_rgb == old
                                                                   else "neither")
    print(f"  formula: {kind}; probe CMYK {list(probe.getdata())} -> RGB {probe_rgb} "
          f"(old would give {old}, new {new})")
    with Image.open(files["cmyk.jpg"]) as im:
        print(f"  cmyk.jpg: mode {im.mode}, Adobe {im.info.get('adobe')}, transform {im.info.get('adobe_transform')}")
        raw = np.array(im)
        rgb = np.array(im.convert("RGB"))
    for yx in [(0, 0), (3, 3), (20, 8), (14, 44), (45, 60), (30, 40)]:
        print(f"  pixel (y, x) = {yx}: CMYK as PIL holds it {tuple(raw[yx])} -> RGB {tuple(rgb[yx])}")
    return kind


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join("tests", "fixtures", "data"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    src_pil = Image.fromarray(source_image(), "RGB")
    files = write_images(args.out, src_pil)
    tensors = references(src_pil, files)
    meta = {"generator": "tools/make_data_fixtures.py", "pillow": PIL.__version__,
            "torchvision": torchvision.__version__, "torch": torch.__version__, "numpy": np.__version__}
    path = os.path.join(args.out, "pil_reference.safetensors")
    save_safetensors(path, tensors, meta)

    total = 0
    for p in list(files.values()) + [path]:
        size = os.path.getsize(p)
        total += size
        print(f"wrote {p} ({size} bytes)")
    print(f"  {len(tensors)} tensors: " + ", ".join(f"{k}{list(v.shape)}" for k, v in tensors.items()))
    with Image.open(files["gray16.png"]) as im:
        mode, g16 = im.mode, np.array(im)
    g8 = tensors["decoded_gray16_png"][..., 0]
    print(f"  gray16.png opens as mode {mode}, values {g16.min()}..{g16.max()}; convert('RGB') clamps them: "
          f"{int((g8 == 255).sum())} of {g8.size} pixels are 255, {int((g8 == np.minimum(g16, 255)).sum())} "
          f"equal min(v, 255)")
    print(f"total {total} bytes")
    spec_ok = check_spec_vectors()
    check_cmyk(files)
    for width, height in RRC_SIZES:
        s = tensors[f"rrc_stats_{width}x{height}"]
        print(f"rrc {width}x{height}: fallback {list(tensors[f'rrc_fallback_{width}x{height}'])}, "
              f"stats {[round(float(v), 4) for v in s]}")
    if not spec_ok:
        print("some METHOD.md vectors do not hold", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
