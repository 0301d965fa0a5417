"""PyTorch baseline for bench/ops/bench_saliency_mask.cpp: the reference's saliency-guided masking
(METHOD.md sections 5.1 to 5.5) of the same batch (256 views of 3 x 224 x 224, a 7 x 7 grid, the same
foreground maps), timed the same way (one warm-up call, then `repeats` calls between two
synchronisations, median of 5 rounds), printed in the same table format. Rates count the same bytes
as the engine's table (read x, write the masked views, read the blurred views for blur, plus the
u8 cells), whatever PyTorch moves, and are also given as a share of the copy bandwidth measured in
the same run. The reference's loops write only the masked cells of x in place (and hp pastes a
few shared noise patches), so they move far fewer bytes than that and their share can pass 100%:
compare times.

Two forms of each masking:
  - the reference's (plain op names): Python loops over the images of the batch, as the published
    code runs them on a GPU batch, masking x in place. hp draws one uniform per image for the
    focal test and the noise patches of the call (Z_s, Z_c and, in neg mode, Z_f, shared by every
    image and cell: METHOD.md O6), then per image the focal box (pos: the four strips around the kept
    square, fresh noise per image) or the grid: `random` draws the spatial/channel choice and m,
    numpy shuffles the FG and BG index lists (squeezed, so a one-cell list is skipped: O4; sliced
    the Python way: O3), and each chosen cell is pasted with tensor slicing, once for all channels
    (spatial) or per channel after a fresh shuffle (channel). blur and mean draw a float32 m per
    image with torch, pick the cells the same way and copy each from the blurred views / write the
    image's channel means (taken for the whole batch first). One call masks the whole batch, as
    the engine's does (the reference calls its masker per GPU batch of 32; what a call draws
    besides the per-image work is a few small tensors);
  - [vectorised]: the same masking as whole-batch tensor operations (cell ranks from random keys
    by argsort, pixel masks by repeat_interleave, one torch.where), with the engine's clean rules
    (fresh noise per pixel, N_BG clipped at 0, one-cell lists kept), written out of place as the
    engine's op is.

    python3 bench/torch_ref/bench_saliency_mask.py [--device cpu|cuda|all] [--quick]

--quick masks a batch of 8 instead of 256 (as the engine's --quick).
"""

import random

import numpy as np
import torch

from timing import run_benchmark, seconds_per_call

GRID, SIDE = 7, 224
CELL = SIDE // GRID
CELLS = GRID * GRID
# mode: (m low, m high, noise std, focal side) (METHOD.md 5.1, 5.2)
MODES = {"pos": (0.05, 0.25, 0.18, 200), "neg": (0.40, 0.70, 0.14, 130)}
MASK64 = (1 << 64) - 1


def splitmix64(state):
    """One step of splitmix64 on a 64-bit state: (new state, output), as the engine's bench."""
    state = (state + 0x9E3779B97F4A7C15) & MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return state, z ^ (z >> 31)


def foreground_maps(n):
    """The engine bench's maps, bit for bit: (n, 49) uint8, a blob of 30 to 40 cells per image."""
    maps = np.zeros((n, CELLS), dtype=np.uint8)
    for i in range(n):
        state = 1000 + i
        state, h = splitmix64(state)
        count = 30 + h % 11
        state, h = splitmix64(state)
        cy = 12 + h % 33
        state, h = splitmix64(state)
        cx = 12 + h % 33
        ranked = []
        for p in range(CELLS):
            dy, dx = 8 * (p // GRID) + 4 - cy, 8 * (p % GRID) + 4 - cx
            state, h = splitmix64(state)
            ranked.append((dy * dy + dx * dx + h % 256, p))
        ranked.sort()
        for _, p in ranked[:count]:
            maps[i, p] = 1
    return maps


def cell_lists(fg_map):
    """The FG and BG cell indices of one map, squeezed as the reference does (a one-cell list
    becomes a 0-d array, which the masking then skips)."""
    return np.argwhere(fg_map == 1).squeeze(), np.argwhere(fg_map == 0).squeeze()


def shuffled(cells):
    if cells.ndim > 0:
        np.random.shuffle(cells)
    return cells


def chosen(fg_cells, bg_cells, n_fg, n_bg, mode):
    """The cells masked: the first n_fg of the shuffled FG list, and in pos mode the BG list sliced
    by n_bg (Python slicing: a negative n_bg keeps all but the last |n_bg|)."""
    picked = list(fg_cells[:n_fg]) if fg_cells.ndim > 0 else []
    if mode == "pos" and bg_cells.ndim > 0:
        picked += list(bg_cells[:n_bg])
    return picked


def cell_slices(p):
    r, c = divmod(int(p), GRID)
    return slice(r * CELL, (r + 1) * CELL), slice(c * CELL, (c + 1) * CELL)


def hp_reference(x, fg_maps, mode):
    """The reference's noise masking of a batch, in place (METHOD.md 5.2, faithful)."""
    low, high, std, side = MODES[mode]
    b, _, h, w = x.shape
    device = x.device
    focal_draw = torch.rand(b)
    z_spatial = torch.randn(3, CELL, CELL, device=device) * std
    z_channel = torch.cat([torch.randn(1, CELL, CELL, device=device) * std for _ in range(3)])
    z_focal = torch.randn(3, side, side, device=device) * std if mode == "neg" else None
    for i in range(b):
        if focal_draw[i] < 0.2:
            top, left = random.randint(0, h - side), random.randint(0, w - side)
            if mode == "pos":
                x[i, :, :top, :] = torch.randn(3, top, w, device=device) * std
                x[i, :, top + side:, :] = torch.randn(3, h - top - side, w, device=device) * std
                x[i, :, top:top + side, :left] = torch.randn(3, side, left, device=device) * std
                x[i, :, top:top + side, left + side:] = torch.randn(3, side, w - left - side, device=device) * std
            else:
                x[i, :, top:top + side, left:left + side] = z_focal
            continue
        spatial = random.random() < 0.3
        m = random.uniform(low, high)
        fg_cells, bg_cells = cell_lists(fg_maps[i])
        masked_fg = m * (fg_cells.size / CELLS)  # m rho, rho = |FG| / 49
        if masked_fg >= 0.56:
            masked_fg = 0.55
        n_fg = round(CELLS * masked_fg)
        n_bg = int(CELLS * m) - n_fg
        if spatial:
            for p in chosen(shuffled(fg_cells), shuffled(bg_cells), n_fg, n_bg, mode):
                rows, cols = cell_slices(p)
                x[i, :, rows, cols] = z_spatial
        else:
            for ch in range(3):
                for p in chosen(shuffled(fg_cells), shuffled(bg_cells), n_fg, n_bg, mode):
                    rows, cols = cell_slices(p)
                    x[i, ch, rows, cols] = z_channel[ch]


def grid_reference(x, fg_maps, mode, fill_cell):
    """The reference's blur / mean masking loop, in place (METHOD.md 5.3, 5.4): fill_cell(i, rows, cols)
    writes the cell."""
    low, high, _, _ = MODES[mode]
    ratios = torch.empty(x.shape[0]).uniform_(low, high)
    for i in range(x.shape[0]):
        m = ratios[i]
        fg_cells, bg_cells = cell_lists(fg_maps[i])
        n_fg = int(torch.round(m * (fg_cells.size / CELLS) * CELLS))
        n_bg = int(CELLS * m) - n_fg
        for p in chosen(shuffled(fg_cells), shuffled(bg_cells), n_fg, n_bg, mode):
            rows, cols = cell_slices(p)
            fill_cell(i, rows, cols)


def blur_reference(x, fg_maps, mode, blurred):
    def fill_cell(i, rows, cols):
        x[i, :, rows, cols] = blurred[i, :, rows, cols]

    grid_reference(x, fg_maps, mode, fill_cell)


def mean_reference(x, fg_maps, mode):
    means = x.mean(dim=(2, 3))  # every image's channel means before any cell is written

    def fill_cell(i, rows, cols):
        x[i, :, rows, cols] = means[i, :, None, None]

    grid_reference(x, fg_maps, mode, fill_cell)


def ranks(keys):
    """The rank of each key along the last axis (0 = smallest)."""
    return keys.argsort(dim=-1).argsort(dim=-1)


def vectorised(x, fg, strategy, mode, blurred=None):
    """The masking as batch tensor operations, out of place, with the clean rules; fg (N, 49) bool
    on x's device."""
    low, high, std, side = MODES[mode]
    n, _, h, w = x.shape
    device = x.device
    fg_count = fg.sum(dim=1)
    if strategy == "hp":
        m = low + torch.rand(n, dtype=torch.float64, device=device) * (high - low)
        masked_fg = m * (fg_count.double() / CELLS)
        n_fg = torch.round(CELLS * torch.where(masked_fg >= 0.55, torch.full_like(masked_fg, 0.55), masked_fg))
        keys = torch.rand(n, 3, CELLS, device=device)
        spatial = torch.rand(n, device=device) < 0.3
        keys = torch.where(spatial[:, None, None], keys[:, :1].expand(-1, 3, -1), keys)
    else:
        m = torch.empty(n, device=device).uniform_(low, high)
        n_fg = torch.round(m * (fg_count / CELLS) * CELLS)
        keys = torch.rand(n, 1, CELLS, device=device)
    n_bg = (torch.floor(CELLS * m) - n_fg).clamp(min=0) if mode == "pos" else torch.zeros_like(n_fg)
    in_fg = fg[:, None, :]
    # A cell's rank within its own list: the other list's keys pushed past every key (keys < 1).
    rank_fg, rank_bg = ranks(keys.masked_fill(~in_fg, 2.0)), ranks(keys.masked_fill(in_fg, 2.0))
    cells = torch.where(in_fg, rank_fg < n_fg[:, None, None], rank_bg < n_bg[:, None, None])
    replace = cells.view(n, -1, GRID, GRID).repeat_interleave(CELL, dim=2).repeat_interleave(CELL, dim=3)
    if strategy == "hp":
        focal = torch.rand(n, device=device) < 0.2
        top = (torch.rand(n, device=device) * (h - side + 1)).long()
        left = (torch.rand(n, device=device) * (w - side + 1)).long()
        rows, cols = torch.arange(h, device=device), torch.arange(w, device=device)
        in_rows = (rows >= top[:, None]) & (rows < top[:, None] + side)
        in_cols = (cols >= left[:, None]) & (cols < left[:, None] + side)
        box = in_rows[:, :, None] & in_cols[:, None, :]
        focal_replace = ~box if mode == "pos" else box
        replace = torch.where(focal[:, None, None, None], focal_replace[:, None], replace)
        fill = torch.randn_like(x) * std
    elif strategy == "blur":
        fill = blurred
    else:
        fill = x.mean(dim=(2, 3), keepdim=True)
    return torch.where(replace, fill, x)


def bench_device(device, quick):
    gpu = device.type == "cuda"
    n = 8 if quick else 256
    repeats = 10 if gpu else 1
    gen = torch.Generator(device="cpu").manual_seed(0)
    rand = lambda *shape: ((torch.rand(*shape, generator=gen) * 4 - 2)).to(device)
    random.seed(0)
    np.random.seed(0)
    table = []

    copy_elems = 1 << 20 if quick else (1 << 26 if gpu else 1 << 24)
    big = rand(copy_elems)
    copy_gb = 2 * copy_elems * 4 / 1e9
    copy_s = seconds_per_call(device, repeats, lambda: big.clone())
    copy_gbps = copy_gb / copy_s
    table.append(("copy (clone)", f"({copy_elems},)", copy_s, copy_gb, ""))

    x = rand(n, 3, SIDE, SIDE)
    blurred = rand(n, 3, SIDE, SIDE)  # the values do not change the work
    fg_maps = foreground_maps(n)
    fg = torch.from_numpy(fg_maps).bool().to(device)
    counts = fg_maps.sum(axis=1)

    image_bytes = x.numel() * 4
    flag_bytes = n * CELLS + n * 3 * CELLS + n
    shape = f"({n}, 3, {SIDE}, {SIDE}) G{GRID}"

    def row(op, image_passes, fn):
        gb = (image_passes * image_bytes + flag_bytes) / 1e9
        s = seconds_per_call(device, repeats, fn)
        table.append((op, shape, s, gb, f"{100 * gb / s / copy_gbps:.0f}% of copy"))

    cases = [("hp pos", 2), ("hp neg", 2), ("blur pos", 3), ("mean pos", 2)]
    for name, passes in cases:
        strategy, mode = name.split()
        if strategy == "hp":
            row(f"saliency_mask {name}", passes, lambda: hp_reference(x, fg_maps, mode))
        elif strategy == "blur":
            row(f"saliency_mask {name}", passes, lambda: blur_reference(x, fg_maps, mode, blurred))
        else:
            row(f"saliency_mask {name}", passes, lambda: mean_reference(x, fg_maps, mode))
    for name, passes in cases:
        strategy, mode = name.split()
        row(f"saliency_mask {name} [vectorised]", passes, lambda: vectorised(x, fg, strategy, mode, blurred))

    print(f"\ntorch {torch.__version__} {device} (f32, {torch.get_num_threads()} threads; foreground cells per "
          f"image: {counts.mean():.1f} on average, {counts.min()} to {counts.max()})")
    print(f"{'op':<36} {'shape':<28} {'time (ms)':>11} {'rate':>12}  ")
    for op, shape_text, s, gigabytes, note in table:
        print(f"{op:<36} {shape_text:<28} {s * 1e3:>11.3f} {gigabytes / s:>8.2f} GB/s {note}")


if __name__ == "__main__":
    with torch.no_grad():
        run_benchmark(bench_device)
