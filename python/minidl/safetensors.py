"""Reads and writes safetensors files (huggingface/safetensors "Format") with numpy alone, as
minidl writes them (core/safetensors.hpp), without the safetensors package (Debian has none):

    8 bytes   little-endian uint64 N, the length of the header
    N bytes   JSON header: {"__metadata__": {str: str}, "<name>": {"dtype": "F32",
              "shape": [...], "data_offsets": [begin, end]}, ...}; offsets count from the byte
              after the header
    the rest  the tensors' bytes, little-endian, row-major

minidl's checkpoints hold F32 tensors and string metadata (model, normalization, config, epoch,
seed, ...). load() also reads the other common dtypes (F64, F16, I64, I32, I16, I8, U8, BOOL);
save() writes any numpy array of those dtypes, so a file from load() round-trips bit for bit.
"""
import json
import struct
from collections import namedtuple

import numpy as np

# safetensors dtype -> numpy dtype (little-endian).
DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
          "I8": "i1", "U8": "u1", "BOOL": "?"}
MAX_HEADER = 64 << 20  # minidl refuses larger headers too

Checkpoint = namedtuple("Checkpoint", ["tensors", "metadata"])
Checkpoint.__doc__ = """tensors: dict name -> numpy array (file order); metadata: dict str -> str
(the "__metadata__" entry; {} if absent)."""


def load(path):
    """The Checkpoint in `path`. Raises ValueError naming the file and the entry for a malformed
    file (short, header too long or not a JSON object, unknown dtype, offsets outside the data or
    not matching the shape); OSError if it cannot be read."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError(f"{path}: {len(blob)} bytes, too short for a safetensors file")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > MAX_HEADER or 8 + n > len(blob):
        raise ValueError(f"{path}: header length {n} beyond the file ({len(blob)} bytes)")
    try:
        header = json.loads(blob[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"{path}: the header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: the header is not a JSON object")
    data = memoryview(blob)[8 + n:]
    metadata = header.pop("__metadata__", {}) or {}
    if not isinstance(metadata, dict):
        raise ValueError(f"{path}: __metadata__ is not an object")
    entries = sorted(header.items(), key=lambda kv: kv[1].get("data_offsets", [0])[0]
                     if isinstance(kv[1], dict) else 0)
    tensors = {}
    for name, e in entries:
        if not isinstance(e, dict) or e.get("dtype") not in DTYPES:
            raise ValueError(f"{path}: tensor {name!r}: dtype must be one of "
                             f"{', '.join(DTYPES)}, got {e.get('dtype') if isinstance(e, dict) else e!r}")
        dtype = np.dtype(DTYPES[e["dtype"]])
        shape = tuple(int(d) for d in e.get("shape", []))
        begin, end = (int(x) for x in e.get("data_offsets", [-1, -1]))
        count = int(np.prod(shape, dtype=np.int64))
        if not 0 <= begin <= end <= len(data) or end - begin != count * dtype.itemsize:
            raise ValueError(f"{path}: tensor {name!r}: data_offsets [{begin}, {end}] do not hold "
                             f"{count} {e['dtype']} values inside {len(data)} data bytes")
        tensors[name] = np.frombuffer(data[begin:end], dtype=dtype).reshape(shape).copy()
    return Checkpoint(tensors, {str(k): str(v) for k, v in metadata.items()})


def save(path, tensors, metadata=None):
    """Writes `tensors` (dict name -> numpy array or anything np.asarray takes; float32 stays
    F32) and `metadata` (dict str -> str) to `path`, in the order given. The header is padded
    with spaces to a multiple of 8 bytes, as the safetensors package does. Raises ValueError for
    a dtype safetensors cannot name or a non-string metadata value."""
    to_name = {np.dtype(v).newbyteorder("<") if np.dtype(v).itemsize > 1 else np.dtype(v): k
               for k, v in DTYPES.items()}
    header, chunks, offset = {}, [], 0
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise ValueError("metadata keys and values must be strings")
        header["__metadata__"] = dict(metadata)
    for name, array in tensors.items():
        a = np.ascontiguousarray(array)
        le = a.dtype.newbyteorder("<") if a.dtype.itemsize > 1 else a.dtype
        if le not in to_name:
            raise ValueError(f"tensor {name!r}: dtype {a.dtype} has no safetensors name")
        raw = a.astype(le, copy=False).tobytes()
        header[name] = {"dtype": to_name[le], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in chunks:
            f.write(raw)
