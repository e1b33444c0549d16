"""The embedded tiny base models: Stable Diffusion 1.x and SDXL architectures at toy widths.

Each is built from a fixed config, filled with the pretrained weights shipped in
`lorahub/tiny_weights/` (made by `python -m lorahub.pretrain`: the bases draw the synthetic world
of coloured shapes), written once as an ordinary diffusers pipeline folder into the lorahub cache,
and loaded with `from_pretrained` like any real model. Widths are distinct from real models (and from each other) so that `formats` can
recognise adapters made for them: tiny-sd1 cross-attention 32 (text hidden 32); tiny-sdxl
cross-attention 96 = text encoder 1 hidden 40 + text encoder 2 hidden 56.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lorahub import families
from lorahub.errors import InvalidInputError
from lorahub.fileio import atomic_dir
from lorahub.paths import lorahub_cache

TINY_IDS = families.tiny_ids()  # {"tiny": "tiny-sd1", "tiny-sd1": ..., "tiny-sdxl": ...}
BUILD_VERSION = 2  # bump when a config or the weights change: the cache folder name follows
SEED = 20261129
NATIVE = 64  # pixels: the size the tiny bases were trained at (the UNets' sample_size x 8)
WEIGHTS_DIR = Path(__file__).with_name("tiny_weights")
MANIFEST = "MANIFEST.json"
REBUILD = "reinstall lorahub, or rebuild them with `python -m lorahub.pretrain`"

SD1_TEXT = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
}
SDXL_TEXT_1 = {
    "hidden_size": 40,
    "intermediate_size": 80,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
}
SDXL_TEXT_2 = {
    "hidden_size": 56,
    "intermediate_size": 112,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
}


def is_tiny(base: str) -> bool:
    """True when `base` names an embedded tiny model."""
    return base in TINY_IDS


def tiny_family(base: str) -> str | None:
    """The base family (`tiny-sd1`/`tiny-sdxl`) of a tiny id, else None."""
    return TINY_IDS.get(base)


def resolve_base(base: str) -> str:
    """Map `tiny`/`tiny-sdxl` to their built folders; any other id or path is returned as is."""
    return str(ensure_tiny(base)) if is_tiny(base) else base


def ensure_tiny(name: str = "tiny") -> Path:
    """Return the folder of a tiny pipeline, building it once (atomically, under a lock)."""
    family = TINY_IDS.get(name)
    if family is None:
        raise InvalidInputError(f"unknown tiny model {name!r}: use one of {sorted(TINY_IDS)}")
    dest = lorahub_cache() / "models" / f"{family}-v{BUILD_VERSION}"
    if (dest / "model_index.json").exists():
        return dest
    with _lock(dest.with_suffix(".lock")):
        if not (dest / "model_index.json").exists():
            with atomic_dir(dest) as tmp:
                build_tiny(family, tmp)
    return dest


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_tiny(family: str, dest: Path, weights: Path | None = None) -> Path:
    """Build the `tiny-sd1` or `tiny-sdxl` pipeline with its pretrained weights into `dest`
    (byte-identical every time)."""
    pipe = build_architecture(family)
    load_weights(pipe, family, weights or shipped_weights(family))
    pipe.save_pretrained(dest, safe_serialization=True)
    _normalise_configs(dest)
    return dest


def build_architecture(family: str) -> Any:
    """The pipeline of `family` with its fixed config and seeded random weights."""
    return _build_sdxl() if family == "tiny-sdxl" else _build_sd1()


def component_names(family: str) -> tuple[str, ...]:
    """The trained components of a tiny family, in the order of its weight file."""
    if family == "tiny-sdxl":
        return ("vae", "text_encoder", "text_encoder_2", "unet")
    return ("vae", "text_encoder", "unet")


def shipped_weights(family: str) -> Path:
    """The shipped weight file of `family`, checked against the manifest (size and sha256)."""
    import hashlib

    path = WEIGHTS_DIR / f"{family}.safetensors"
    try:
        manifest = json.loads((WEIGHTS_DIR / MANIFEST).read_text())
        expected = manifest["files"][path.name]
        data = path.read_bytes()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError(
            f"the pretrained weights of {family} are missing ({path}: "
            f"{getattr(exc, 'strerror', None) or exc}); {REBUILD}"
        ) from None
    if len(data) != expected["size"] or hashlib.sha256(data).hexdigest() != expected["sha256"]:
        raise InvalidInputError(
            f"the pretrained weights of {family} are corrupt ({path} does not match "
            f"{MANIFEST}); {REBUILD}"
        )
    return path


def load_weights(pipe: Any, family: str, path: Path) -> None:
    """Load a pretrain weight file into `pipe` (every tensor of every component, exact shapes)."""
    import torch
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    except (OSError, SafetensorError) as exc:
        raise InvalidInputError(f"cannot read the tiny weights {path}: {exc}; {REBUILD}") from None
    if meta.get("lorahub.tiny_family") != family:
        raise InvalidInputError(
            f"{path} holds weights of {meta.get('lorahub.tiny_family')!r}, not {family}; {REBUILD}"
        )
    for name in component_names(family):
        model = getattr(pipe, name)
        state = {k[len(name) + 1 :]: v for k, v in tensors.items() if k.startswith(name + ".")}
        try:
            model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=True)
        except RuntimeError as exc:
            raise InvalidInputError(
                f"{path} does not fit the {family} {name}: {str(exc).splitlines()[0]}; {REBUILD}"
            ) from None
    pipe.vae.register_to_config(scaling_factor=float(meta["vae.scaling_factor"]))


def write_manifest(folder: Path) -> Path:
    """Record size and sha256 of every weight file in `folder` (the test checks them)."""
    import hashlib

    files = {
        p.name: {"size": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
        for p in sorted(folder.glob("*.safetensors"))
    }
    path = folder / MANIFEST
    path.write_text(json.dumps({"build_version": BUILD_VERSION, "files": files}, indent=2) + "\n")
    return path


def _normalise_configs(dest: Path) -> None:
    """Drop path-dependent keys so the folder is byte-identical wherever it is built."""
    for cfg in dest.rglob("*.json"):
        data = json.loads(cfg.read_text())
        if isinstance(data, dict) and "_name_or_path" in data:
            data.pop("_name_or_path")
            cfg.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def byte_vocab() -> tuple[dict[str, int], list[str]]:
    """A CLIP byte-level vocabulary with no merges: every byte is a token (no download needed)."""
    chars = _byte_alphabet()
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(tokens)}, []


def _byte_alphabet() -> list[str]:
    """The 256 printable stand-ins for bytes used by byte-level BPE (GPT-2/CLIP)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def _tokenizer() -> Any:
    from transformers import CLIPTokenizer

    vocab, merges = byte_vocab()
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def _text_encoder(widths: dict[str, int], seed: int, with_projection: bool = False) -> Any:
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    vocab, _ = byte_vocab()
    config = CLIPTextConfig(
        vocab_size=len(vocab),
        max_position_embeddings=77,
        bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"],
        projection_dim=32,
        hidden_act="quick_gelu",
        **widths,
    )
    torch.manual_seed(seed)
    cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    return cls(config).eval()


def _vae(seed: int) -> Any:
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 16, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=64,
        scaling_factor=0.18215,
    ).eval()


def _scheduler() -> Any:
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
    )


def _build_sd1() -> Any:
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    torch.manual_seed(SEED)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=SD1_TEXT["hidden_size"],
        attention_head_dim=4,
        norm_num_groups=16,
    ).eval()
    return StableDiffusionPipeline(
        vae=_vae(SEED + 1),
        text_encoder=_text_encoder(SD1_TEXT, SEED + 2),
        tokenizer=_tokenizer(),
        unet=unet,
        scheduler=_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _build_sdxl() -> Any:
    import torch
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel

    torch.manual_seed(SEED + 10)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=SDXL_TEXT_1["hidden_size"] + SDXL_TEXT_2["hidden_size"],
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + 32,
        transformer_layers_per_block=(1, 2),
        norm_num_groups=16,
    ).eval()
    return StableDiffusionXLPipeline(
        vae=_vae(SEED + 11),
        text_encoder=_text_encoder(SDXL_TEXT_1, SEED + 12),
        text_encoder_2=_text_encoder(SDXL_TEXT_2, SEED + 13, with_projection=True),
        tokenizer=_tokenizer(),
        tokenizer_2=_tokenizer(),
        unet=unet,
        scheduler=_scheduler(),
        force_zeros_for_empty_prompt=True,
    )
