"""Example adapters for the tiny bases: real LoRA files, written the way diffusers writes them.

The demo's two (`DEMO_ADAPTERS`) are trained by lorahub's own trainer on a variant of the
synthetic world, so each has one visible, measurable effect: `example-style` washes the colours
out towards grey, `example-light` draws light pastel colours. They are trained once per tiny base
weights and spec: those of tiny-sd1 ship in the package (`python -m lorahub.examples` retrains
them after the tiny weights change), others are kept in the lorahub cache. An `ExampleAdapter`
with no `style` is a seeded random LoRA (what the tests use where only the file's structure matters). Both are saved with diffusers'
`save_lora_weights` (plus the LoRA config, so alpha survives a plain diffusers load), with
sorted headers and no run times, so the same build gives the same bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorahub.fileio import atomic_path
from lorahub.paths import lorahub_cache

UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
TE_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")
# a whole-picture style needs more than attention: the transformer blocks' projections and
# feed-forward too (as kohya's LoCon/"all linear" presets do)
EXAMPLE_RECIPE = 5  # bump when _train_example changes: cached examples are trained anew
STYLE_TARGETS = (*UNET_TARGETS, "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2")
SHIPPED = Path(__file__).parent / "tiny_weights" / "examples"  # the demo's trained examples


@dataclass(frozen=True)
class ExampleAdapter:
    """What the demo writes: a name, a rank, alpha, a seed and whether it touches the text encoder."""

    name: str
    rank: int
    alpha: float
    seed: int
    text_encoder: bool = False
    description: str = ""
    trigger_words: tuple[str, ...] = ()
    style: str | None = None  # "grey", "pastel", "dark", "outline": trained on that world variant
    steps: int = 400
    images: int = 48  # of its variant of the world
    learning_rate: float = 1e-3
    targets: tuple[
        str, ...
    ] = ()  # UNet modules (default: STYLE_TARGETS trained, UNET_TARGETS random)
    noise_offset: float = 0.0


DEMO_ADAPTERS = (
    ExampleAdapter(
        "example-style",
        4,
        4.0,
        1,
        False,
        "Washes the colours out towards grey (UNet LoRA, rank 4).",
        ("monochrome",),
        style="grey",
    ),
    ExampleAdapter(
        "example-light",
        8,
        8.0,
        2,
        True,
        "Draws shapes in light, pastel colours (UNet + text-encoder LoRA, rank 8).",
        ("pastel",),
        style="pastel",
    ),
)
# Not one of the demo's: a second concept for `mix search` to combine with demo-shapes' purple
# (its test and benchmark look for purple squares on a dark background); short, so cheap to train.
DARK_EXAMPLE = ExampleAdapter(
    "example-dark",
    4,
    4.0,
    3,
    False,
    "Draws on a dark background (UNet LoRA, rank 4).",
    ("dark",),
    style="dark",
    steps=150,
    images=24,
)
SHIPPED_SPECS = (*DEMO_ADAPTERS, DARK_EXAMPLE)  # trained once, shipped in tiny_weights/examples


def write_example_adapter(
    base: str, dest: str | Path, spec: ExampleAdapter, *, std: float = 0.05
) -> Path:
    """Write the example LoRA `spec` for `base` (a tiny id or pipeline folder) to `dest` (a
    .safetensors file): trained when the spec has a style, else seeded random weights."""
    if spec.style:
        return _trained_example(base, Path(dest), spec)
    from lorahub.models import load_pipeline

    pipe = load_pipeline(base, device="cpu", dtype="fp32")
    layers, metadata = {}, {}
    layers["unet_lora_layers"], metadata["unet_lora_adapter_metadata"] = _random_lora(
        pipe.unet, spec.targets or UNET_TARGETS, spec, std, spec.seed
    )
    if spec.text_encoder:
        for i, attr in enumerate(("text_encoder", "text_encoder_2")):
            if getattr(pipe, attr, None) is not None:
                sd, cfg = _random_lora(
                    getattr(pipe, attr), TE_TARGETS, spec, std, spec.seed + 100 + i
                )
                layers[f"{attr}_lora_layers"], metadata[f"{attr}_lora_adapter_metadata"] = sd, cfg
    dest = Path(dest)
    with atomic_path(dest, suffix=".safetensors") as tmp:
        type(pipe).save_lora_weights(tmp.parent, weight_name=tmp.name, **layers, **metadata)
        _sort_header(tmp)
    return dest


def _trained_example(base: str, dest: Path, spec: ExampleAdapter) -> Path:
    """Train `spec` on its variant of the world, once per tiny build: the demo's examples of
    tiny-sd1 ship in the package (`python -m lorahub.examples` retrains them), others are
    trained on first use and kept in the cache."""
    import shutil

    from lorahub.tiny import is_tiny, tiny_family

    if not is_tiny(base):
        return _train_example(base, dest, spec)
    family = str(tiny_family(base))
    key = recipe_key(family, spec)
    source = _shipped_example(family, spec, key)
    if source is None:
        source = lorahub_cache() / "examples" / f"{family}-{spec.name}-{key}.safetensors"
        if not source.is_file():
            source.parent.mkdir(parents=True, exist_ok=True)
            _train_example(base, source, spec)
    with atomic_path(dest, suffix=".safetensors") as tmp:
        shutil.copyfile(source, tmp)
    return dest


def recipe_key(family: str, spec: ExampleAdapter) -> str:
    """What a trained example depends on: the recipe, the tiny build, its weights, the spec."""
    from lorahub.tiny import BUILD_VERSION, shipped_weights

    weights = hashlib.sha256(shipped_weights(family).read_bytes()).hexdigest()
    return hashlib.sha256(
        f"{EXAMPLE_RECIPE} {BUILD_VERSION} {weights} {spec!r}".encode()
    ).hexdigest()[:16]


def _shipped_example(family: str, spec: ExampleAdapter, key: str) -> Path | None:
    """The shipped file of `spec` when it was trained by this very recipe and is intact; None
    otherwise (the caller trains it: a stale or damaged shipped file costs time, never wrong
    weights)."""
    import json

    try:
        entry = json.loads((SHIPPED / "MANIFEST.json").read_text())[f"{family}-{spec.name}"]
        path = SHIPPED / entry["file"]
        if entry["recipe"] != key:
            return None
        data = path.read_bytes()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    ok = len(data) == entry["size"] and hashlib.sha256(data).hexdigest() == entry["sha256"]
    return path if ok else None


def ship_examples(dest: Path | None = None, family: str = "tiny-sd1") -> Path:
    """Train the demo's examples on `family` and write them with their manifest into `dest`
    (the package's folder by default): run after the tiny weights change."""
    import json
    import tempfile

    dest = dest or SHIPPED
    dest.mkdir(parents=True, exist_ok=True)
    manifest = {}
    with tempfile.TemporaryDirectory() as work:
        for spec in SHIPPED_SPECS:
            name = f"{family}-{spec.name}"
            path = _train_example(family, Path(work) / f"{name}.safetensors", spec)
            data = path.read_bytes()
            (dest / f"{name}.safetensors").write_bytes(data)
            manifest[name] = {
                "file": f"{name}.safetensors",
                "recipe": recipe_key(family, spec),
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
    path = dest / "MANIFEST.json"
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path


def _train_example(base: str, dest: Path, spec: ExampleAdapter) -> Path:
    import tempfile

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from lorahub.training import TrainConfig, train
    from lorahub.training.demo import demo_dataset

    with tempfile.TemporaryDirectory(prefix=".example-", dir=dest.parent) as work:
        data = demo_dataset(
            Path(work) / "data",
            count=spec.images,
            size=64,
            seed=spec.seed,
            background="dark" if spec.style == "dark" else "light",
            outline=spec.style == "outline",
            tint=spec.style if spec.style in ("pastel", "grey") else None,
        )
        config = TrainConfig(
            data=str(data),
            base=base,
            name=spec.name,
            output_dir=str(Path(work) / "run"),
            resolution=64,
            rank=spec.rank,
            alpha=spec.alpha,
            learning_rate=spec.learning_rate,
            max_train_steps=spec.steps,
            batch_size=4,
            train_text_encoder=spec.text_encoder,
            caption_dropout=0.2,  # the empty prompt learns the style too: guidance keeps it
            target_modules=spec.targets or STYLE_TARGETS,
            noise_offset=spec.noise_offset,
            seed=spec.seed,
            register=False,
            validation_prompts=("a red circle",),
            validation_inference_steps=4,
        )
        with one_thread():  # the same bytes on every machine of a kind, whatever its cores
            result = train(config)
        with safe_open(str(result.weights_path), "pt") as fh:
            configs = {
                k: _no_local_paths(v)
                for k, v in (fh.metadata() or {}).items()
                if "lora_adapter" in k
            }
        tensors = load_file(str(result.weights_path))
        with atomic_path(dest, suffix=".safetensors") as tmp:
            save_file(tensors, str(tmp), metadata={"format": "pt", **configs})
            _sort_header(tmp)
    return dest


def _no_local_paths(config_json: str) -> str:
    """The LoRA configs without the base's folder (peft records the text encoder's local path):
    the file is the same whichever cache it was trained from."""
    import json

    config = json.loads(config_json)
    for key in config:
        if key.endswith("base_model_name_or_path"):
            config[key] = None
    return json.dumps(config, sort_keys=True)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _sort_header(path: Path) -> None:
    """Rewrite a safetensors header with sorted keys: the writer's key order is not stable, and
    the demo's files (and so their sha256 in `registry.db.example`) should be byte-identical."""
    import json
    import struct

    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + length :])


def _random_lora(
    model: Any, targets: tuple[str, ...], spec: ExampleAdapter, std: float, seed: int
) -> tuple[dict, dict]:
    """Attach a peft LoRA to `model`, fill it with seeded noise, return (state dict, LoRA config)."""
    import torch
    from peft import LoraConfig, get_peft_model_state_dict

    config = LoraConfig(
        r=spec.rank,
        lora_alpha=spec.alpha,
        target_modules=list(targets),
        init_lora_weights="gaussian",
    )
    model.add_adapter(config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * std)
    state = get_peft_model_state_dict(model)
    meta = {**config.to_dict(), "base_model_name_or_path": None}  # not the local cache path
    for key in ("target_modules", "modules_to_save", "exclude_modules"):
        if isinstance(meta.get(key), set | frozenset):  # peft keeps sets: hash-seed order
            meta[key] = sorted(meta[key])
    return state, meta


if __name__ == "__main__":
    print(ship_examples())
