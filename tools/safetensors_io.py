"""The safetensors format as our fixture scripts write it (the engine reads it: engine/serialize.h).

One writer for numpy arrays or torch tensors: an 8-byte little-endian header length, the JSON
header (padded with spaces to 8 bytes) with "__metadata__", then the tensors' bytes back to back in
insertion order. Writing the same tensors twice gives the same bytes.
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
