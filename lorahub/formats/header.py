"""Reading the safetensors header (8-byte little-endian length + JSON) and hashing files.

No torch here: listing and probing an adapter reads only its header (and a few alpha scalars).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

from lorahub.errors import BadFileError, UntrustedFileError

MAX_HEADER = 100 * 1024 * 1024
PICKLE_SUFFIXES = (".ckpt", ".pt", ".bin", ".pth", ".pkl")
DTYPE_SIZES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U64": 8,
    "U32": 4,
    "U16": 2,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}
DTYPE_NAMES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
}
DTYPE_BITS = {  # every dtype safetensors 0.8 knows, in bits
    **{k: 8 * v for k, v in DTYPE_SIZES.items()},
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "C64": 64,
}
STRUCT_CODES = {"F32": "<f", "F64": "<d", "F16": "<e", "I64": "<q", "I32": "<i"}


@dataclass(frozen=True)
class FileHashes:
    """Hashes of an adapter file: whole file and tensor bytes only (metadata ignored)."""

    sha256: str
    autov2: str
    tensor_sha256: str | None
    autov3: str | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def open_regular(path: str | os.PathLike[str], buffering: int = -1) -> BinaryIO:
    """Open a regular file for reading; a FIFO, device or socket is refused without blocking
    (O_NONBLOCK on the open, then fstat on what was opened: no race with a swapped path)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BadFileError(f"{Path(path).name} is not a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=buffering)
    except BaseException:
        os.close(fd)
        raise


def is_pickle(path: str | os.PathLike[str]) -> bool:
    """True for files that are (or claim to be) Python pickles: refused unless trusted."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return True
    with open_regular(path) as fh:
        head = fh.read(9)
    if head.startswith(b"PK\x03\x04"):
        return True
    # pickle protocol 2-5 starts 0x80 0x0N; a safetensors length can too, but its JSON follows at byte 8
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5 and head[8:9] != b"{"


def refuse_pickle(path: str | os.PathLike[str]) -> None:
    """Raise UntrustedFileError for a pickle file the user has not trusted."""
    raise UntrustedFileError(
        f"{Path(path).name} is a pickle file, which can run code when loaded; "
        "convert it to safetensors or pass --trust-pickle (loaded with weights_only=True)"
    )


def read_header(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, str], int]:
    """Return (tensor entries, `__metadata__`, header length) of a safetensors file."""
    path = Path(path)
    try:
        with open_regular(path) as fh:
            size = os.fstat(fh.fileno()).st_size
            raw_len = fh.read(8)
            n = _check_length(path, raw_len, size)
            raw = fh.read(n)
    except OSError as exc:
        raise BadFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    header = _parse_json(path, raw)
    metadata = header.pop("__metadata__", None)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise BadFileError(
            f"{path.name}: safetensors __metadata__ must map names to strings (the safetensors "
            "library refuses this file)"
        )
    _check_entries(path, header, size - 8 - n)
    return header, metadata, n


def _check_length(path: Path, raw_len: bytes, size: int) -> int:
    if size == 0:
        raise BadFileError(f"{path.name} is empty (0 bytes)")
    if len(raw_len) < 8:
        raise BadFileError(
            f"{path.name} is truncated: {size} bytes, too short for a safetensors header"
        )
    (n,) = struct.unpack("<Q", raw_len)
    if n > MAX_HEADER or n < 2:
        raise BadFileError(f"{path.name} is not a safetensors file: implausible header length {n}")
    if n > size - 8:
        raise BadFileError(
            f"{path.name} is not a valid safetensors file (truncated?): header length {n} "
            f"is larger than the file ({size} bytes)"
        )
    return n


def _parse_json(path: Path, raw: bytes) -> dict[str, Any]:
    try:
        header = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError):  # JSONDecodeError, NaN/Infinity, 4300+ digit ints
        raise BadFileError(
            f"{path.name} is not a safetensors file: its header is not JSON"
        ) from None
    except RecursionError:
        raise BadFileError(
            f"{path.name} is not a safetensors file: its header JSON is nested too deeply"
        ) from None
    if not isinstance(header, dict):
        raise BadFileError(
            f"{path.name} is not a safetensors file: its header is not a JSON object"
        )
    return header


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


USIZE = 1 << 64  # safetensors' shape and offset fields are unsigned 64-bit integers
SHAPE_RULE = "shape must be a list of non-negative integers"
OFFSETS_RULE = "data_offsets must be two non-negative integers"


def _malformed(path: Path, key: str) -> str:
    return f"{path.name}: malformed safetensors entry for tensor {key!r}"


def _is_index(value: Any) -> bool:
    """A JSON unsigned 64-bit integer (what safetensors' usize fields accept)."""
    return type(value) is int and 0 <= value < USIZE


def _check_entries(path: Path, header: dict[str, Any], data_len: int) -> None:
    """Validate tensor entries as strictly as the safetensors library does before opening:
    known dtype, shape and offsets of unsigned ints, bytes matching shape x dtype, and offsets
    that tile the data exactly (no gap, no overlap, nothing after the last tensor)."""
    spans: list[tuple[int, int, str]] = []
    for key, entry in header.items():  # a header has ~1,000 entries: plain checks, no generators
        if type(entry) is not dict:
            raise BadFileError(_malformed(path, key))
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if type(dtype) is not str or dtype not in DTYPE_BITS:
            raise BadFileError(f"{_malformed(path, key)}: unknown dtype {str(dtype)[:40]!r}")
        if type(shape) is not list:
            raise BadFileError(f"{_malformed(path, key)}: {SHAPE_RULE}")
        count = 1
        for d in shape:
            if type(d) is not int or not 0 <= d < USIZE:
                raise BadFileError(f"{_malformed(path, key)}: {SHAPE_RULE}")
            count *= d
        if type(offsets) is not list or len(offsets) != 2:
            raise BadFileError(f"{_malformed(path, key)}: {OFFSETS_RULE}")
        begin, end = offsets
        if type(begin) is not int or type(end) is not int or not 0 <= begin <= end < USIZE:
            if _is_index(begin) and _is_index(end):
                raise BadFileError(f"{_malformed(path, key)}: data_offsets end before they begin")
            raise BadFileError(f"{_malformed(path, key)}: {OFFSETS_RULE}")
        if end > data_len:
            raise BadFileError(
                f"{path.name} is truncated: tensor {key!r} ends at byte {end} of the data, "
                f"but only {data_len} bytes follow the header"
            )
        bits = count * DTYPE_BITS[dtype]
        if bits % 8 or bits // 8 != end - begin:
            raise BadFileError(
                f"{path.name}: tensor {key!r} has {end - begin} bytes for shape {shape} {dtype}"
            )
        spans.append((begin, end, key))
    at = 0
    for begin, end, key in sorted(spans):
        if begin != at:
            what = "overlaps the tensor before it" if begin < at else "leaves a gap before it"
            raise BadFileError(f"{path.name}: tensor {key!r} {what} (data offset {begin})")
        at = end
    if at != data_len:
        raise BadFileError(
            f"{path.name}: {data_len - at} bytes after the last tensor are not part of any tensor"
        )


def read_scalars(
    path: str | os.PathLike[str], header: dict[str, Any], header_len: int, keys: list[str]
) -> dict[str, float]:
    """Read small scalar tensors (kohya `.alpha`) by offset, without loading anything else."""
    out: dict[str, float] = {}
    ordered = sorted(keys, key=lambda k: header[k]["data_offsets"][0])
    # Unbuffered, and scalars lying close together read in one call: a buffered read would pull
    # ~4 KB around every 4-byte scalar, one read per scalar costs a system call each.
    with open_regular(path, buffering=0) as fh:
        for run in _runs(ordered, header):
            first, last = header[run[0]]["data_offsets"][0], header[run[-1]]["data_offsets"][1]
            fh.seek(8 + header_len + first)
            span = fh.read(last - first)
            for key in run:
                entry = header[key]
                begin, end = entry["data_offsets"]
                raw = span[begin - first : end - first]
                code = STRUCT_CODES.get(entry["dtype"])
                if entry["dtype"] == "BF16" and len(raw) == 2:
                    out[key] = struct.unpack("<f", b"\x00\x00" + raw)[0]
                elif code and len(raw) == struct.calcsize(code):
                    out[key] = float(struct.unpack(code, raw)[0])
                if key in out and not math.isfinite(out[key]):
                    raise BadFileError(
                        f"{Path(path).name}: {key} is {out[key]}, not a finite number"
                    )
    return out


SCALAR_GAP = 4096  # bytes between two scalars read in one call rather than two


def _runs(ordered: list[str], header: dict[str, Any]) -> list[list[str]]:
    """Keys (by offset) grouped where each begins within SCALAR_GAP bytes of the previous end."""
    runs: list[list[str]] = []
    end = -1
    for key in ordered:
        begin, stop = header[key]["data_offsets"]
        if runs and begin - end <= SCALAR_GAP:
            runs[-1].append(key)
        else:
            runs.append([key])
        end = max(end, stop)
    return runs


def hash_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> FileHashes:
    """sha256/AutoV2 of the whole file and sha256/AutoV3 of the tensor bytes, in one pass."""
    path = Path(path)
    full = hashlib.sha256()
    tensors = hashlib.sha256()
    with open_regular(path) as fh:
        head = fh.read(8)
        full.update(head)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        is_st = 0 <= n <= os.fstat(fh.fileno()).st_size - 8 and not is_pickle(path)
        if is_st:
            remaining = n
            while remaining > 0:
                block = fh.read(min(chunk, remaining))
                if not block:
                    break
                full.update(block)
                remaining -= len(block)
        while block := fh.read(chunk):
            full.update(block)
            tensors.update(block)
    digest = full.hexdigest()
    tdigest = tensors.hexdigest() if is_st else None
    return FileHashes(digest, digest[:10], tdigest, tdigest[:12] if tdigest else None)


def canonicalize_header(path: str | os.PathLike[str]) -> Path:
    """Rewrite a safetensors header in a fixed key order, in place (data bytes untouched).

    safetensors writes `__metadata__` from a hash map, so the same tensors and metadata can give
    different bytes from run to run; lorahub's files must be byte-stable (hashes, idempotent push).
    """
    import shutil

    from lorahub.fileio import atomic_path

    path = Path(path)
    with open(path, "rb") as src:
        (n,) = struct.unpack("<Q", src.read(8))
        header = json.loads(src.read(n))
        meta = header.pop("__metadata__", None)
        ordered = dict(sorted(header.items(), key=lambda kv: (kv[1]["data_offsets"][0], kv[0])))
        if meta is not None:
            ordered = {"__metadata__": dict(sorted(meta.items())), **ordered}
        text = json.dumps(ordered, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)
        with atomic_path(path, suffix=".safetensors") as tmp, open(tmp, "wb") as dst:
            dst.write(struct.pack("<Q", len(text)) + text)
            shutil.copyfileobj(src, dst, 1 << 20)  # tensor bytes streamed, never all in memory
    return path
