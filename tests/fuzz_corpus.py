"""A corpus of hostile and broken adapter files, written from a seed (issue 17's fuzz proof).

Each case is a file (or special file) under one folder: bad header lengths, non-JSON, wrong JSON
types, unknown dtypes, bad offsets and shapes, deep nesting, hostile regexes, huge metadata,
200k tensors, special files, and seeded byte mutations of a real kohya header. Whether a file is
valid is decided by the safetensors library itself (`safe_open`), never by lorahub's reader.
"""

from __future__ import annotations

import json
import os
import random
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

KEY = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
ENTRY = {"dtype": "F16", "shape": [4, 768], "data_offsets": [0, 6144]}


@dataclass(frozen=True)
class Case:
    name: str
    path: Path
    special: bool = False  # not a regular file (FIFO, link, folder)


def raw_file(path: Path, header: Any, data: bytes = b"", length: int | None = None) -> Path:
    """A file of an 8-byte length, the header (JSON of `header`, or bytes as given), data."""
    body = header if isinstance(header, bytes) else json.dumps(header).encode()
    n = len(body) if length is None else length
    path.write_bytes(struct.pack("<Q", n % (1 << 64)) + body + data)
    return path


def kohya_header(rank: int = 4, alpha: float | None = 2.0) -> tuple[dict[str, Any], bytes]:
    """A valid kohya header (down, up, alpha) and its data bytes."""
    down, up = rank * 768 * 2, 320 * rank * 2
    header: dict[str, Any] = {
        f"{KEY}.lora_down.weight": {"dtype": "F16", "shape": [rank, 768], "data_offsets": [0, down]},
        f"{KEY}.lora_up.weight": {
            "dtype": "F16", "shape": [320, rank], "data_offsets": [down, down + up],
        },
    }  # fmt: skip
    data = b"\x00" * (down + up)
    if alpha is not None:
        header[f"{KEY}.alpha"] = {
            "dtype": "F32", "shape": [], "data_offsets": [down + up, down + up + 4],
        }  # fmt: skip
        data += struct.pack("<f", alpha)
    return header, data


def peft_header(rank: int = 4) -> tuple[dict[str, Any], bytes]:
    """A valid diffusers/PEFT-keyed header (no alpha tensors: alphas come from metadata)."""
    key = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"
    down, up = rank * 768 * 2, 320 * rank * 2
    header = {
        f"{key}.lora_A.weight": {"dtype": "F16", "shape": [rank, 768], "data_offsets": [0, down]},
        f"{key}.lora_B.weight": {
            "dtype": "F16", "shape": [320, rank], "data_offsets": [down, down + up],
        },
    }  # fmt: skip
    return header, b"\x00" * (down + up)


def with_meta(meta: dict[str, Any], peft: bool = False) -> tuple[dict[str, Any], bytes]:
    header, data = peft_header() if peft else kohya_header()
    return {"__metadata__": meta, **header}, data


def _entry(**over: Any) -> dict[str, Any]:
    return {f"{KEY}.lora_down.weight": {**ENTRY, **over}}


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


HOSTILE = "(.*.*.*.*.*.*.*.*.*.*.*.*)*Z"


def write_corpus(folder: Path, seed: int = 17, mutations: int = 40) -> list[Case]:
    """Write every case under `folder`; returns them in a fixed order."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []

    def add(name: str, header: Any, data: bytes = b"", length: int | None = None) -> None:
        cases.append(Case(name, raw_file(folder / f"{name}.safetensors", header, data, length)))

    good, gdata = kohya_header()
    # bad header lengths
    (folder / "empty.safetensors").write_bytes(b"")
    cases.append(Case("empty", folder / "empty.safetensors"))
    (folder / "short.safetensors").write_bytes(b"\x10\x00\x00")
    cases.append(Case("short", folder / "short.safetensors"))
    add("len-past-end", good, gdata, length=10**9)
    add("len-huge", good, gdata, length=(1 << 64) - 1)
    add("len-one", b"{", gdata, length=1)
    add("len-short-of-json", good, gdata, length=20)
    # not JSON / not an object
    add("random-bytes", bytes(rng.getrandbits(8) for _ in range(200)))
    add("not-utf8", b'{"a\xff\xfe": 1}')
    add("json-array", [1, 2, 3])
    add("json-string", "hello")
    add("json-null", None)
    add("nan-literal", b'{"a": NaN}')
    add("big-int-literal", b'{"a": ' + b"9" * 5000 + b"}")
    # wrong JSON types
    add("entry-list", {f"{KEY}.lora_down.weight": [1, 2]}, b"\0" * 8)
    add("entry-string", {f"{KEY}.lora_down.weight": "x"})
    add("dtype-int", _entry(dtype=16), b"\0" * 6144)
    add("dtype-dict", _entry(dtype={"a": 1}), b"\0" * 6144)
    add("dtype-lower", _entry(dtype="f16"), b"\0" * 6144)
    add("dtype-unknown", _entry(dtype="F99"), b"\0" * 6144)
    add("shape-string", _entry(shape="4x768"), b"\0" * 6144)
    add("shape-dict", _entry(shape={"a": 4}), b"\0" * 6144)
    add("shape-of-dicts", _entry(shape=[{"a": 4}, 768]), b"\0" * 6144)
    add("shape-negative", _entry(shape=[-4, -768]), b"\0" * 6144)
    add("shape-float", _entry(shape=[4.0, 768.0]), b"\0" * 6144)
    add("shape-bool", _entry(shape=[True, 768]), b"\0" * 1536)
    add("shape-huge", _entry(shape=[2**70, 2**70]), b"\0" * 6144)
    add("shape-inf", b'{"' + f"{KEY}.lora_down.weight".encode() + b'": {"dtype": "F16", '
        b'"shape": [Infinity], "data_offsets": [0, 2]}}', b"\0" * 2)  # fmt: skip
    add("offsets-string", _entry(data_offsets="0-6144"), b"\0" * 6144)
    add("offsets-dict", _entry(data_offsets={"0": 6144}), b"\0" * 6144)
    add("offsets-three", _entry(data_offsets=[0, 6144, 6144]), b"\0" * 6144)
    add("offsets-negative", _entry(data_offsets=[-6144, 0]), b"\0" * 6144)
    add("offsets-reversed", _entry(data_offsets=[6144, 0]), b"\0" * 6144)
    add("offsets-float", _entry(data_offsets=[0.0, 6144.0]), b"\0" * 6144)
    add("offsets-huge", _entry(data_offsets=[0, 2**80]), b"\0" * 6144)
    gap = dict(good)
    gap[f"{KEY}.lora_up.weight"] = {**gap[f"{KEY}.lora_up.weight"]}
    gap[f"{KEY}.lora_up.weight"]["data_offsets"] = [6144 + 64, 6144 + 64 + 2560]
    add("offsets-gap", gap, gdata + b"\0" * 64)
    overlap = dict(good)
    overlap[f"{KEY}.lora_up.weight"] = {
        "dtype": "F16", "shape": [320, 4], "data_offsets": [0, 2560],
    }  # fmt: skip
    add("offsets-overlap", overlap, gdata)
    add("trailing-bytes", good, gdata + b"\0" * 100)
    add("metadata-list", {"__metadata__": [1, 2], **good}, gdata)
    add("metadata-int-value", {"__metadata__": {"ss_network_dim": 4}, **good}, gdata)
    add("metadata-null-value", {"__metadata__": {"ss_network_dim": None}, **good}, gdata)
    add("metadata-nested", {"__metadata__": {"a": {"b": 1}}, **good}, gdata)
    # kohya .alpha scalars that lie
    neg = dict(good)
    neg[f"{KEY}.alpha"] = {"dtype": "F32", "shape": [], "data_offsets": [-40, -36]}
    add("alpha-negative-offset", neg, gdata)
    for label, value in (("inf", float("inf")), ("nan", float("nan")), ("huge", 3.0e38)):
        h, d = kohya_header(alpha=None)
        h[f"{KEY}.alpha"] = {"dtype": "F32", "shape": [], "data_offsets": [len(d), len(d) + 4]}
        add(f"alpha-{label}", h, d + struct.pack("<f", value))
    h, d = kohya_header(alpha=None)
    h[f"{KEY}.alpha"] = {"dtype": "C64", "shape": [], "data_offsets": [len(d), len(d) + 8]}
    add("alpha-complex", h, d + b"\0" * 8)
    # deep nesting, in the header and in metadata strings lorahub parses
    add(
        "deep-lora_adapter_metadata-peft",
        *with_meta({"lora_adapter_metadata": _deep(100_000)}, True),
    )
    add("deep-header", b'{"a": ' + _deep(100_000).encode() + b"}")
    for key in ("ss_tag_frequency", "lora_adapter_metadata", "ss_dataset_dirs", "ss_datasets"):
        add(f"deep-{key}", *with_meta({key: _deep(100_000)}))
    # hostile regexes and broken configs
    lam = {"unet.lora_alpha": 8, "unet.r": 4, "unet.alpha_pattern": {HOSTILE: 2}}
    add("regex-hostile", *with_meta({"lora_adapter_metadata": json.dumps(lam)}, peft=True))
    for label, pattern in (("invalid", "(["), ("rank", HOSTILE)):
        key = "unet.rank_pattern" if label == "rank" else "unet.alpha_pattern"
        lam = {"unet.lora_alpha": 8, "unet.r": 4, key: {pattern: 2}}
        add(f"regex-{label}", *with_meta({"lora_adapter_metadata": json.dumps(lam)}, peft=True))
    lam = {"unet.lora_alpha": "x", "unet.r": [4], "unet.alpha_pattern": [1]}
    add("config-wrong-types", *with_meta({"lora_adapter_metadata": json.dumps(lam)}, peft=True))
    lam = {"unet.lora_alpha": 1e400, "unet.r": 10**30, "unet.use_rslora": True}
    add(
        "config-huge",
        *with_meta(
            {"lora_adapter_metadata": json.dumps(lam).replace("Infinity", "1e400")}, peft=True
        ),
    )
    many = {f"p{i}": 2 for i in range(20_000)}
    lam = {"unet.lora_alpha": 8, "unet.r": 4, "unet.alpha_pattern": many}
    add("regex-many", *with_meta({"lora_adapter_metadata": json.dumps(lam)}, peft=True))
    # huge metadata
    words = ", ".join(f"w{i}" for i in range(200_000))
    add("trigger-200k", *with_meta({"modelspec.trigger_phrase": words}))
    freq = {"ds": {f"t{i}": i for i in range(200_000)}}
    add("tagfreq-200k", *with_meta({"ss_tag_frequency": json.dumps(freq)}))
    odd = '{"ds": {"a": 1e400, "b": -1e400, "c": NaN, "d": 99999999999999999999999999, "e": "x"}}'
    add("tagfreq-odd", *with_meta({"ss_tag_frequency": odd}))
    for key, value in (
        ("ss_network_dim", "99999999999999999999999"),
        ("ss_network_alpha", "1e400"),
        ("ss_network_alpha", "nan"),
        ("ss_training_started_at", "1e300"),
        ("ss_num_train_images", "-99999999999999999999999"),
        ("ss_steps", "(1+2j)"),
    ):
        add(f"meta-{key}-{value[:6]}", *with_meta({key: value}))
    add("meta-huge-value", *with_meta({"ss_output_name": "x" * 5_000_000}))
    add(
        "meta-control-chars",
        *with_meta({"ss_output_name": "a\x00b\x1b[31mred", "ss_tag_frequency": "\x00"}),
    )
    # 200k tensors (valid safetensors, not an adapter lorahub knows)
    header = {
        f"t{i}": {"dtype": "U8", "shape": [1], "data_offsets": [i, i + 1]} for i in range(200_000)
    }
    add("tensors-200k", header, b"\0" * 200_000)
    # seeded byte mutations of a real kohya file
    real = folder / "real.bin"
    save_file(
        {
            f"{KEY}.lora_down.weight": np.ones((4, 768), np.float16),
            f"{KEY}.lora_up.weight": np.ones((320, 4), np.float16),
            f"{KEY}.alpha": np.array(2.0, np.float16),
        },
        str(real),
        metadata={"ss_network_dim": "4", "ss_network_alpha": "2"},
    )
    blob = real.read_bytes()
    real.unlink()
    (n,) = struct.unpack("<Q", blob[:8])
    for i in range(mutations):
        b = bytearray(blob)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(0, 8 + n)
            b[pos] = rng.choice([rng.getrandbits(8), ord("-"), ord("9"), ord('"'), ord("{"), 0])
        path = folder / f"mutant-{i:02d}.safetensors"
        path.write_bytes(bytes(b))
        cases.append(Case(f"mutant-{i:02d}", path))
    # special files
    fifo = folder / "fifo.safetensors"
    os.mkfifo(fifo)
    cases.append(Case("fifo", fifo, special=True))
    (folder / "loop-a.safetensors").symlink_to(folder / "loop-b.safetensors")
    (folder / "loop-b.safetensors").symlink_to(folder / "loop-a.safetensors")
    cases.append(Case("symlink-loop", folder / "loop-a.safetensors", special=True))
    (folder / "dangling.safetensors").symlink_to(folder / "nowhere.safetensors")
    cases.append(Case("dangling", folder / "dangling.safetensors", special=True))
    (folder / "folder.safetensors").mkdir()
    cases.append(Case("folder", folder / "folder.safetensors", special=True))
    (folder / "devnull.safetensors").symlink_to("/dev/null")
    cases.append(Case("device-link", folder / "devnull.safetensors", special=True))
    return cases
