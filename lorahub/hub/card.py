"""The model card (README.md) of a pushed adapter or mix, built only from registry content.

Nothing here reads a clock or a tool version: the same registry content gives the same bytes,
so pushing an unchanged adapter again changes no file and makes no commit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lorahub import families

if TYPE_CHECKING:
    from lorahub.registry.records import AdapterRecord, LineageEdge, MixRecord

FAMILY_BASES = {f.id: f.reference_base for f in families.FAMILIES.values()}
TINY_BASES = {base: FAMILY_BASES[fid] for base, fid in families.tiny_ids().items()}
PRIVATE_KEYS = {
    "path",
    "output",
    "dest",
    "seconds",
    "inputs",
    "input",
    "modules",
    "warnings",
    "operation",
}
BASE_RELATIONS = ("trained-from", "fused-from", "converted-from", "pulled-from")
TRAINING_KEYS = (
    "steps",
    "epochs",
    "learning_rate",
    "unet_lr",
    "text_encoder_lr",
    "batch_size",
    "resolution",
    "optimizer",
    "lr_scheduler",
    "mixed_precision",
    "seed",
    "network_dim",
    "network_alpha",
    "network_module",
    "num_train_images",
)


@dataclass(frozen=True)
class HubFile:
    """One file of a push: where it goes in the repo, its size and sha256, and its role."""

    path_in_repo: str
    size: int
    sha256: str
    role: str  # weights | kohya | image | recipe | card

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path_in_repo,
            "size": self.size,
            "sha256": self.sha256,
            "role": self.role,
        }


def base_model_for(family: str | None, lineage: Sequence[LineageEdge] = ()) -> str | None:
    """The Hub id of the base: a registered lineage base if it names one, else the family's."""
    for edge in lineage:
        if edge.relation in BASE_RELATIONS and edge.parent_kind in ("model", "hub_repo"):
            for text in (
                edge.details.get("base_model"),
                edge.details.get("base"),
                edge.parent_label,
            ):
                mapped = hub_base_id(text)
                if mapped:
                    return mapped
    return FAMILY_BASES.get(family or "")


def hub_base_id(text: Any) -> str | None:
    """A base reference as a Hub id: tiny ids map to `lorahub/tiny-*`; `owner/name` stays; paths do not."""
    if not isinstance(text, str) or not text:
        return None
    if text in TINY_BASES:
        return TINY_BASES[text]
    parts = text.split("/")
    if len(parts) == 2 and all(parts) and not text.startswith((".", "~")) and ":" not in text:
        return text
    return None


def license_for(record: AdapterRecord, override: str | None) -> str:
    """`--license`, else the file's modelspec licence, else "other"."""
    if override:
        return override
    meta = record.metadata or {}
    found = meta.get("modelspec.license") or record.summary.get("modelspec_license")
    return str(found).strip().lower() if found else "other"


def unique(items: Iterable[str | None]) -> list[str]:
    """Non-empty items, first occurrence kept."""
    out: list[str] = []
    for item in items:
        if item and item not in out:
            out.append(item)
    return out


def card_yaml(
    *,
    base_model: str | None,
    license: str,
    tags: Sequence[str],
    prompt: str | None,
    images: Sequence[HubFile],
    widget_text: str,
) -> Any:
    """The card's metadata block (a ModelCardData) in a fixed key order."""
    from huggingface_hub import ModelCardData

    fields: dict[str, Any] = {"base_model_relation": "adapter"} if base_model else {}
    widget = [{"text": widget_text, "output": {"url": f.path_in_repo}} for f in images]
    return ModelCardData(
        base_model=base_model,
        library_name="diffusers",
        license=license,
        tags=list(tags),
        instance_prompt=prompt,
        widget=widget or None,
        **fields,
    )


def render(data: Any, body: str) -> str:
    """The README.md text: YAML front matter, then the body."""
    from huggingface_hub import ModelCard

    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body.strip()}\n")
    return str(card)


def adapter_card(
    record: AdapterRecord,
    repo: str,
    files: Sequence[HubFile],
    lineage: Sequence[LineageEdge],
    *,
    license: str | None = None,
) -> str:
    """The README.md of a pushed adapter."""
    parents = [e for e in lineage if e.child_kind == "adapter" and e.child_id == str(record.id)]
    base = base_model_for(record.base_family, parents)
    family = record.base_family if record.base_family != "unknown" else None
    tags = unique(["lora", "text-to-image", "diffusers", family, *record.tags])
    prompt = ", ".join(record.trigger_words) or None
    images = [f for f in files if f.role == "image"]
    data = card_yaml(
        base_model=base,
        license=license_for(record, license),
        tags=tags,
        prompt=prompt,
        images=images,
        widget_text=prompt or record.name,
    )
    sections = [
        f"# {record.name}",
        record.description
        or f"A LoRA adapter for {family or 'Stable Diffusion'} published with lorahub.",
        trigger_section(record.trigger_words),
        usage_section(repo, base, prompt or record.name, files),
        details_section(record),
        training_section(record, parents),
        lineage_section(parents),
        files_section(files, record),
    ]
    return render(data, "\n\n".join(s for s in sections if s))


def trigger_section(words: Sequence[str]) -> str:
    """How to trigger the adapter."""
    if not words:
        return ""
    quoted = ", ".join(f"`{w}`" for w in words)
    return f"## Trigger words\n\nUse {quoted} in the prompt to trigger the style."


def usage_section(repo: str, base: str | None, prompt: str, files: Sequence[HubFile]) -> str:
    """A diffusers snippet (and the kohya file for A1111/ComfyUI when there is one)."""
    base_id = base or "<base model>"
    code = (
        "```py\nimport torch\nfrom diffusers import AutoPipelineForText2Image\n\n"
        f'pipe = AutoPipelineForText2Image.from_pretrained("{base_id}", torch_dtype=torch.float16).to("cuda")\n'
        f'pipe.load_lora_weights("{repo}", weight_name="pytorch_lora_weights.safetensors")\n'
        f"image = pipe({json.dumps(prompt)}).images[0]\n```"
    )
    text = f"## Use it with diffusers\n\n{code}"
    kohya = [f.path_in_repo for f in files if f.role == "kohya"]
    if kohya:
        text += f"\n\nFor AUTOMATIC1111 or ComfyUI, download `{kohya[0]}` (kohya format) into your LoRA folder."
    return text


def recipe_usage_section(base: str | None, members: Sequence[dict[str, Any]], prompt: str) -> str:
    """A diffusers snippet that loads each member of a recipe from its repo and sets the weights."""
    names = [re.sub(r"[^A-Za-z0-9_]", "_", str(m.get("name"))) for m in members]
    loads = "".join(
        f'pipe.load_lora_weights("{m.get("repo")}", weight_name="{m.get("weight_name")}",'
        f' revision="{m.get("commit_sha")}", adapter_name="{n}")\n'
        for m, n in zip(members, names, strict=True)
    )
    weights = [
        m.get("weight")
        if m.get("te_weight") is None
        else {"unet": m.get("weight"), "text_encoder": m.get("te_weight")}
        for m in members
    ]
    code = (
        "```py\nimport torch\nfrom diffusers import AutoPipelineForText2Image\n\n"
        f'pipe = AutoPipelineForText2Image.from_pretrained("{base or "<base model>"}", torch_dtype=torch.float16).to("cuda")\n'
        f"{loads}pipe.set_adapters({json.dumps(names)}, adapter_weights={json.dumps(weights)})\n"
        f"image = pipe({json.dumps(prompt)}).images[0]\n```"
    )
    text = f"## Use it with diffusers\n\n{code}"
    if any(m.get("block_weights") for m in members):
        text += "\n\nSome members have per-block weights: see `lorahub_recipe.json`."
    return text


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table (pipes in cells escaped)."""

    def cell(v: Any) -> str:
        return str("" if v is None else v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def details_section(record: AdapterRecord) -> str:
    """What the weights are: format, network, base family, rank, alpha, targets."""
    rows = [
        ("Registered format", record.format),
        ("Network type", record.network_type),
        ("Base family", record.base_family),
        ("Components", ", ".join(record.components)),
        (
            "Rank",
            record.rank
            if record.rank_min == record.rank_max
            else f"{record.rank} ({record.rank_min}-{record.rank_max})",
        ),
        ("Alpha", record.alpha),
        ("Target modules", ", ".join(record.targets)),
        ("Modules / parameters", f"{record.module_count} / {record.param_count}"),
    ]
    return "## Details\n\n" + table(("", ""), [r for r in rows if r[1] not in (None, "")])


def training_section(record: AdapterRecord, parents: Sequence[LineageEdge]) -> str:
    """Training, merge or resize parameters from the lineage and the file's training metadata."""
    titles = {
        "trained-from": "Training parameters",
        "merged-from": "Merge parameters",
        "resized-from": "Resize parameters",
    }
    params: dict[str, dict[str, Any]] = {}
    for edge in parents:
        if edge.relation in titles:
            found = params.setdefault(titles[edge.relation], {})
            found.update(public_params(edge.details))
            weight = (edge.details.get("input") or {}).get("weight")
            if weight is not None:
                found[f"weight of {edge.parent_label or edge.parent_id}"] = weight
    facts = {k: record.summary[k] for k in TRAINING_KEYS if k in record.summary}
    if facts:
        params["Training metadata in the file"] = facts
    parts = [
        f"### {title}\n\n"
        + table(("Parameter", "Value"), sorted((k, _value(v)) for k, v in p.items()))
        for title, p in params.items()
        if p
    ]
    return "## How it was made\n\n" + "\n\n".join(parts) if parts else ""


def public_params(details: dict[str, Any]) -> dict[str, Any]:
    """The scalar parameters of a lineage edge worth publishing: no local paths, timings or per-module rows."""
    return {
        k: v
        for k, v in details.items()
        if k not in PRIVATE_KEYS and isinstance(v, (str, int, float, bool)) and not looks_local(v)
    }


def looks_local(value: Any) -> bool:
    """Whether a value looks like a path on this machine (never published)."""
    return isinstance(value, str) and (value.startswith(("/", "~", "./", "..")) or ":\\" in value)


def _value(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True)


def lineage_section(parents: Sequence[LineageEdge]) -> str:
    """Where the adapter came from (one line per parent)."""
    if not parents:
        return ""
    lines = [f"- {e.relation} {e.parent_kind} `{e.parent_label or e.parent_id}`" for e in parents]
    return "## Lineage\n\n" + "\n".join(sorted(lines))


def files_section(files: Sequence[HubFile], record: AdapterRecord | None = None) -> str:
    """The files of this push with their sha256 (and the registered file's hashes)."""
    rows = [(f"`{f.path_in_repo}`", f.role, f.size, f"`{f.sha256}`") for f in files]
    text = "## Files\n\n" + table(("File", "Role", "Bytes", "SHA256"), rows)
    if record is not None and record.sha256:
        text += (
            f"\n\nRegistered file ({record.format}): SHA256 `{record.sha256}`, AutoV2 `{record.autov2}`,"
            f" AutoV3 `{record.autov3}`, tensor SHA256 `{record.tensor_sha256}`."
        )
    return text


def mix_card(
    mix: MixRecord,
    repo: str,
    files: Sequence[HubFile],
    members: Sequence[dict[str, Any]],
    *,
    license: str | None = None,
    recipe: bool = False,
) -> str:
    """The README.md of a pushed mix: the baked adapter, or a recipe naming its members."""
    base = FAMILY_BASES.get(mix.base_family or "")
    tags = unique(
        [
            "lora",
            "text-to-image",
            "diffusers",
            mix.base_family,
            "lorahub-mix",
            "recipe" if recipe else None,
        ]
    )
    images = [f for f in files if f.role == "image"]
    words = unique(w for m in members for w in m.get("trigger_words") or [])
    prompt = ", ".join(words) or None
    data = card_yaml(
        base_model=base,
        license=license or "other",
        tags=tags,
        prompt=prompt,
        images=images,
        widget_text=prompt or mix.name,
    )
    rows = [
        (
            m.get("name"),
            m.get("repo") or "",
            m.get("weight"),
            "same" if m.get("te_weight") is None else m.get("te_weight"),
            m.get("autov3"),
        )
        for m in members
    ]
    what = (
        "A lorahub recipe: load each member from its Hub repo with the weights below."
        if recipe
        else "The members below merged (concatenated, method `cat`) into one adapter."
    )
    sections = [
        f"# {mix.name}",
        mix.description or f"A mix of {len(members)} LoRA adapters, published with lorahub.",
        what,
        trigger_section(words),
        recipe_usage_section(base, members, prompt or mix.name)
        if recipe
        else usage_section(repo, base, prompt or mix.name, files),
        "## Members\n\n"
        + table(("Adapter", "Hub repo", "Weight", "Text-encoder weight", "AutoV3"), rows),
        files_section(files),
    ]
    return render(data, "\n\n".join(s for s in sections if s))
