"""The safetensors format as our fixture scripts write it (the engine reads it: engine/serialize.h).

One writer for numpy arrays or torch tensors: an 8-byte little-endian header length, the JSON
header (padded with spaces to 8 bytes) with "__metadata__", then the tensors' bytes back to back in
insertion order. Writing the same tensors twice gives the same bytes. One reader, for where the
`safetensors` package is not installed (Debian's python3-torch has no safetensors.torch): numpy
arrays in the order of their bytes, plus the metadata.
"""
import json
import struct

import numpy as np

_DTYPES = {np.dtype(np.uint8): "U8", np.dtype(np.int32): "I32", np.dtype(np.int64): "I64",
           np.dtype(np.float32): "F32", np.dtype(np.float64): "F64"}


def _as_numpy(value):
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().contiguous().numpy()
    a = np.asarray(value)
    return a if a.flags.c_contiguous else a.copy(order="C")  # (ascontiguousarray would make 0-d arrays 1-d)


def save_safetensors(path, tensors, metadata):
    header = {"__metadata__": {k: str(v) for k, v in metadata.items()}}
    blobs, offset = [], 0
    for name, value in tensors.items():
        a = _as_numpy(value)
        data = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _DTYPES[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":"))
    text += " " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text.encode())
        for b in blobs:
            f.write(b)


def load_safetensors(path):
    """(tensors, metadata) of a safetensors file: {name: numpy array} in the order of the tensors'
    bytes in the file (the order they were written in) and {key: str}. BF16 has no numpy dtype and
    is refused."""
    kinds = {name: dtype for dtype, name in _DTYPES.items()}
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    metadata = header.pop("__metadata__", {})
    tensors = {}
    for name, info in sorted(header.items(), key=lambda item: item[1]["data_offsets"][0]):
        if info["dtype"] not in kinds:
            raise ValueError(f"{path}: tensor {name} is {info['dtype']}; this reader knows {sorted(kinds)}")
        begin, end = info["data_offsets"]
        kind = kinds[info["dtype"]].newbyteorder("<")
        tensors[name] = np.frombuffer(data[begin:end], dtype=kind).reshape(info["shape"]).copy()
    return tensors, metadata
