"""The registry library: adding, references, tags, search, listing, removal, mixes, lineage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from lorahub import paths
from lorahub.errors import (
    AlreadyExistsError,
    BadFileError,
    IncompatibleError,
    InvalidInputError,
    NotFoundError,
)
from lorahub.registry import LineageParent, Registry
from lorahub.types import MixMember

WIDTHS = {"sd1": 768, "sd2": 1024, "sdxl": 2048}


def write_lora(
    path: Path,
    seed: int = 0,
    *,
    rank: int = 4,
    base: str = "sd1",
    modules: int = 2,
    metadata: dict | None = None,
) -> Path:
    """A small kohya-format LoRA file (real tensors, a few KB)."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for i in range(modules):
        key = f"lora_unet_down_blocks_0_attentions_0_transformer_blocks_{i}_attn2_to_k"
        tensors[f"{key}.lora_down.weight"] = rng.standard_normal((rank, WIDTHS[base])).astype(
            np.float16
        )
        tensors[f"{key}.lora_up.weight"] = rng.standard_normal((320, rank)).astype(np.float16)
        tensors[f"{key}.alpha"] = np.array(rank / 2, dtype=np.float16)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    return path


@pytest.fixture
def reg(lorahub_home: Path) -> Registry:
    registry = Registry()
    yield registry
    registry.close()


def test_add_and_refs(reg: Registry, tmp_path: Path) -> None:
    rec = reg.add_adapter(write_lora(tmp_path / "style.safetensors"), tags=["anime"])
    assert (rec.name, rec.version, rec.format, rec.base_family, rec.rank) == (
        "style",
        None,
        "kohya",
        "sd1",
        4,
    )
    assert rec.path == str((tmp_path / "style.safetensors").resolve()) and rec.tags == ("anime",)
    assert len(rec.autov2) == 10 and len(rec.autov3) == 12 and rec.sha256.startswith(rec.autov2)
    v2 = reg.add_adapter(write_lora(tmp_path / "style2.safetensors", 1), name="style", version="2")
    assert reg.get_adapter("style").id == v2.id  # bare name: newest version
    assert reg.get_adapter("style@2").id == v2.id
    for ref in (rec.autov2, rec.autov3, rec.sha256[:8], rec.tensor_sha256[:9].upper()):
        assert reg.get_adapter(ref).id == rec.id
    with pytest.raises(NotFoundError, match="style@3"):
        reg.get_adapter("style@3")
    with pytest.raises(NotFoundError, match="1234567"):
        reg.get_adapter("1234567")  # too short for a hash prefix, and no such name
    with pytest.raises(InvalidInputError):
        reg.get_adapter("bad name")
    assert reg.get_adapter(rec.autov3).metadata == {}


def test_ambiguous_hash_prefix(reg: Registry, tmp_path: Path) -> None:
    a = reg.add_adapter(write_lora(tmp_path / "a.safetensors", 7))
    reg.add_adapter(write_lora(tmp_path / "b.safetensors", 7, metadata={"ss_note": "re-saved"}))
    assert (
        a.tensor_sha256 == reg.get_adapter("b").tensor_sha256
        and a.sha256 != reg.get_adapter("b").sha256
    )
    with pytest.raises(InvalidInputError, match="ambiguous: a, b"):
        reg.get_adapter(a.autov3)
    assert reg.get_adapter(a.autov2).name == "a"  # the file hash still tells them apart


def test_name_rules(reg: Registry, tmp_path: Path) -> None:
    rec = reg.add_adapter(write_lora(tmp_path / "My LoRA (v2)!.safetensors"))
    assert rec.name == "My-LoRA-v2"
    peft = reg.add_adapter(write_lora(tmp_path / "cool-style" / "adapter_model.safetensors"))
    assert peft.name == "cool-style"
    for bad in ("-x", "a b", "ä", "a/b"):
        with pytest.raises(InvalidInputError):
            reg.add_adapter(tmp_path / "My LoRA (v2)!.safetensors", name=bad, force=True)
    with pytest.raises(AlreadyExistsError, match="--version"):
        reg.add_adapter(write_lora(tmp_path / "other.safetensors", 3), name="My-LoRA-v2")
    with pytest.raises(AlreadyExistsError, match="already registered as 'My-LoRA-v2'"):
        reg.add_adapter(tmp_path / "My LoRA (v2)!.safetensors", name="again")
    with pytest.raises(InvalidInputError, match="invalid tag"):
        reg.add_adapter(tmp_path / "other.safetensors", tags=["two words"])
    assert reg.count_adapters() == 2


def test_force_replaces_in_place(reg: Registry, tmp_path: Path) -> None:
    old = reg.add_adapter(write_lora(tmp_path / "x.safetensors", 1), tags=["keep"])
    new = reg.add_adapter(
        write_lora(tmp_path / "y.safetensors", 2, rank=8), name="x", force=True, tags=["more"]
    )
    assert new.id == old.id and new.rank == 8 and new.path.endswith("y.safetensors")
    assert set(new.tags) == {"keep", "more"} and reg.count_adapters() == 1


def test_bad_files_register_nothing(reg: Registry, tmp_path: Path) -> None:
    good = write_lora(tmp_path / "good.safetensors")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:-100])
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    (tmp_path / "model.ckpt").write_bytes(b"\x80\x02}q\x00.")
    for name in ("truncated.safetensors", "junk.safetensors"):
        with pytest.raises(BadFileError):
            reg.add_adapter(tmp_path / name)
    with pytest.raises(Exception, match="pickle"):
        reg.add_adapter(tmp_path / "model.ckpt")
    with pytest.raises(NotFoundError):
        reg.add_adapter(tmp_path / "absent.safetensors")
    assert reg.count_adapters() == 0


def test_failed_add_leaves_nothing(reg: Registry, tmp_path: Path) -> None:
    src = write_lora(tmp_path / "child.safetensors")
    parent = LineageParent("adapter", "no-such-parent", "merged-from")
    with pytest.raises(NotFoundError, match="no-such-parent"):
        reg.add_adapter(src, copy=True, tags=["t"], lineage=[parent])
    assert reg.count_adapters() == 0
    assert reg.db.execute("SELECT count(*) FROM adapter_tags").fetchone()[0] == 0
    assert reg.db.execute("SELECT count(*) FROM adapters_fts").fetchone()[0] == 0
    assert reg.db.execute("SELECT count(*) FROM lineage").fetchone()[0] == 0
    assert (
        not any(p.is_file() for p in paths.store_dir().rglob("*"))
        if paths.store_dir().exists()
        else True
    )
    folder = tmp_path / "folder"
    write_lora(folder / "one.safetensors", 1)
    (folder / "two.safetensors").write_bytes(b"garbage")
    with pytest.raises(BadFileError):
        reg.add_path(folder)
    assert reg.count_adapters() == 0  # a folder add is one transaction


def test_copy_into_store(reg: Registry, tmp_path: Path) -> None:
    src = write_lora(tmp_path / "peft" / "adapter_model.safetensors")
    (src.parent / "adapter_config.json").write_text('{"r": 4, "lora_alpha": 2}')
    rec = reg.add_adapter(src, name="copied", version="1", copy=True)
    stored = Path(rec.path)
    assert rec.managed and stored.parent == paths.store_dir() / "copied@1"
    assert (
        stored.read_bytes() == src.read_bytes()
        and (stored.parent / "adapter_config.json").is_file()
    )


def test_tags_search_and_filters(reg: Registry, tmp_path: Path) -> None:
    reg.add_adapter(
        write_lora(tmp_path / "cyber-city.safetensors", 1),
        tags=["style", "night"],
        description="Neon streets at dusk",
    )
    reg.add_adapter(
        write_lora(tmp_path / "watercolor.safetensors", 2, rank=16),
        tags=["style"],
        trigger_words=["wtrclr"],
    )
    reg.add_adapter(
        write_lora(tmp_path / "bigface.safetensors", 3, base="sdxl", rank=32), tags=["character"]
    )
    names = lambda **kw: [r.name for r in reg.list_adapters(**kw)]  # noqa: E731
    assert names() == ["bigface", "cyber-city", "watercolor"]
    assert names(tags=["style"]) == ["cyber-city", "watercolor"]
    assert names(tags=["style", "night"]) == ["cyber-city"]
    assert names(base="sdxl") == ["bigface"] and names(format="kohya", base="sd1") == [
        "cyber-city",
        "watercolor",
    ]
    assert names(min_rank=8, max_rank=16) == ["watercolor"]
    assert names(sort="rank") == ["bigface", "watercolor", "cyber-city"]
    assert names(sort="size")[0] == "bigface" and names(sort="created")[0] == "bigface"
    assert names(search="neon") == ["cyber-city"] and names(search="wtrc") == ["watercolor"]
    assert names(search="cyber") == ["cyber-city"] and names(search="charac") == ["bigface"]
    assert names(search='dusk"(*') == ["cyber-city"]  # user text never breaks the FTS syntax
    reg.untag("bigface", ["character"])
    reg.tag("watercolor", ["character"])
    assert names(search="character") == ["watercolor"]
    reg.update_adapter("cyber-city", description="Rainy alleys", trigger_words=["cybr"])
    assert names(search="neon") == [] and names(search="alleys cybr") == ["cyber-city"]
    assert names(limit=1) == ["bigface"]
    with pytest.raises(InvalidInputError):
        reg.list_adapters(sort="color")
    with pytest.raises(InvalidInputError):
        reg.update_adapter("watercolor", name="x")


def test_remove(reg: Registry, tmp_path: Path) -> None:
    keep = write_lora(tmp_path / "keep.safetensors", 1)
    gone = write_lora(tmp_path / "gone.safetensors", 2)
    reg.add_adapter(keep, tags=["t"])
    reg.add_adapter(gone)
    reg.remove_adapter("keep")
    assert keep.is_file() and reg.list_adapters(search="keep") == []
    assert reg.db.execute("SELECT count(*) FROM adapter_tags").fetchone()[0] == 0
    reg.create_mix("m", [MixMember("gone")])
    with pytest.raises(InvalidInputError, match="used by mix"):
        reg.remove_adapter("gone", delete_file=True)
    assert gone.is_file()
    reg.remove_mix("m")
    reg.remove_adapter("gone", delete_file=True)
    assert not gone.exists() and reg.count_adapters() == 0


def test_mixes(reg: Registry, tmp_path: Path) -> None:
    a = reg.add_adapter(write_lora(tmp_path / "a.safetensors", 1))
    reg.add_adapter(write_lora(tmp_path / "b.safetensors", 2))
    reg.add_adapter(write_lora(tmp_path / "xl.safetensors", 3, base="sdxl"))
    mix = reg.create_mix(
        "duo",
        [MixMember("a", 0.7), MixMember("b", 0.4, te_weight=0.0, block_weights={"up": 0.5})],
        description="two",
    )
    assert (
        [m.ref for m in mix.members] == ["a", "b"]
        and mix.base_family == "sd1"
        and mix.member_names == ("a", "b")
    )
    assert reg.get_mix("duo").members[1].block_weights == {"up": 0.5}
    specs = reg.resolve_mix("duo")
    assert (
        specs[0].key == f"{a.tensor_sha256}:{a.sha256}"
        and specs[0].hash == a.autov3
        and specs[0].weight == 0.7
    )
    assert specs[1].te_weight == 0.0 and specs[0].path == a.path
    expanded = reg.resolve_members(
        [MixMember("duo", 0.5)]
    )  # a stored mix works wherever an adapter does
    assert [(x.name, x.weight, x.te_weight) for x in expanded] == [
        ("a", 0.35, None),
        ("b", 0.2, 0.0),
    ]
    with pytest.raises(InvalidInputError, match="same adapter"):
        reg.resolve_members([MixMember("duo"), MixMember("a")])
    with pytest.raises(NotFoundError, match="'nope1', 'nope2'"):
        reg.create_mix("bad", [MixMember("nope1"), MixMember("a"), MixMember("nope2")])
    with pytest.raises(InvalidInputError, match="same adapter"):
        reg.create_mix("bad", [MixMember("a"), MixMember(a.autov3)])
    with pytest.raises(IncompatibleError, match="a is for sd1 but xl is for sdxl"):
        reg.resolve_members([MixMember("a"), MixMember("xl")])
    with pytest.raises(AlreadyExistsError):
        reg.create_mix("duo", [MixMember("a")])
    with pytest.raises(AlreadyExistsError, match="name of an adapter"):
        reg.create_mix("a", [MixMember("b")])
    with pytest.raises(AlreadyExistsError, match="name of a mix"):
        reg.add_adapter(tmp_path / "a.safetensors", name="duo", force=True)
    assert reg.create_mix("duo", [MixMember("b")], force=True).members == (MixMember("b"),)
    assert [m.name for m in reg.list_mixes()] == ["duo"]
    reg.remove_mix("duo")
    with pytest.raises(NotFoundError):
        reg.get_mix("duo")


def test_lineage_publications_models_previews(reg: Registry, tmp_path: Path) -> None:
    base = reg.record_model(
        "fused-1", tmp_path / "fused", {"weights": [0.7]}, kind="fused", base_family="sd1"
    )
    parent = reg.add_adapter(write_lora(tmp_path / "p.safetensors", 1))
    child = reg.add_adapter(
        write_lora(tmp_path / "c.safetensors", 2), source="merged",
        lineage=[LineageParent("adapter", "p", "merged-from", {"weight": 0.7}), LineageParent("dataset", "/data/cats", "trained-from")],
    )  # fmt: skip
    reg.add_lineage("model", "fused-1", "adapter", "c", "fused-from", {"weight": 0.7})
    edges = reg.lineage("c")
    assert {(e.relation, e.parent_label, e.child_label) for e in edges} == {
        ("merged-from", "p", "c"), ("trained-from", "/data/cats", "c"), ("fused-from", "c", "fused-1"),
    }  # fmt: skip
    assert reg.lineage("p")[0].details == {"weight": 0.7} and reg.model_lineage("fused-1")[
        0
    ].child_id == str(base.id)
    with pytest.raises(InvalidInputError, match="relation"):
        reg.add_lineage("adapter", "c", "adapter", "p", "copied-from")
    with pytest.raises(InvalidInputError, match="kind"):
        reg.add_lineage("adapter", "c", "person", "bob", "trained-from")
    for _ in range(2):
        pubs = reg.record_publication(
            "c", "alice/c-lora", "main", "a" * 40, "http://hub/alice/c-lora"
        )
    assert len(pubs) == 1 and reg.get_adapter("c").publications[0].repo == "alice/c-lora"
    assert [r.name for r in reg.list_adapters(published=True)] == ["c"]
    assert [r.name for r in reg.list_adapters(published=False)] == ["p"]
    assert child.source == "merged" and parent.source == "local"
    with pytest.raises(AlreadyExistsError):
        reg.record_model("fused-1", tmp_path, None)
    image = tmp_path / "preview.PNG"
    image.write_bytes(b"\x89PNG fake")
    rec = reg.set_preview("c", image)
    assert (
        rec.preview
        and not Path(rec.preview).is_absolute()
        and reg.preview_path("c").read_bytes() == image.read_bytes()
    )


def test_json_shape(reg: Registry, tmp_path: Path) -> None:
    rec = reg.add_adapter(write_lora(tmp_path / "j.safetensors", metadata={"ss_output_name": "j"}))
    keys = set(rec.to_json())
    documented = {
        "id", "name", "version", "ref", "path", "size", "mtime", "sha256", "autov2", "tensor_sha256", "autov3",
        "format", "network_type", "base_family", "base_evidence", "base_conflict", "components", "rank",
        "rank_min", "rank_max", "rank_summary", "alpha", "dtype", "param_count", "module_count", "targets",
        "trigger_words", "description", "source", "managed", "tags", "summary", "metadata", "preview", "sidecar",
        "publications", "created_at", "updated_at",
    }  # fmt: skip
    assert keys == documented
    assert (
        rec.to_json()["metadata"] == {"ss_output_name": "j"}
        and reg.list_adapters()[0].to_json()["metadata"] is None
    )
    doc = (Path(__file__).resolve().parent.parent / "docs" / "json.md").read_text()
    assert all(f"`{k}`" in doc for k in documented)
