"""`/v1/mixes`: list, show, create (through the registry's validation, as `lorahub mix create`), remove."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from lorahub.errors import NotFoundError
from lorahub.server.schemas import MixBody, blocks
from lorahub.server.state import registry_dep
from lorahub.server.uploads import UPLOAD_TYPES, Upload, image_upload
from lorahub.types import MixMember, check_name, weight_warnings

router = APIRouter(prefix="/v1/mixes", tags=["mixes"])
Reg = Annotated[Any, Depends(registry_dep)]


@router.get("", summary="List mixes")
def list_mixes(registry: Reg) -> dict[str, Any]:
    """Every mix, by name, in `MixRecord.to_json()` shape."""
    mixes = registry.list_mixes()
    return {"mixes": [m.to_json() for m in mixes], "count": len(mixes)}


@router.get("/{name}", summary="One mix")
def get_mix(name: str, registry: Reg) -> dict[str, Any]:
    """A mix with its members (each with the adapter it pins)."""
    return {"mix": registry.get_mix(name).to_json()}


@router.post("", status_code=201, summary="Create (or with force, replace) a mix")
def create_mix(body: MixBody, registry: Reg, response: Response) -> dict[str, Any]:
    """Members must exist, appear once and share one base family; 409 when the name is taken."""
    check_name(body.name, "mix name")
    members = [
        MixMember(
            ref=m.ref, weight=m.weight, te_weight=m.te_weight, block_weights=blocks(m.block_weights)
        )
        for m in body.members
    ]
    mix = registry.create_mix(body.name, members, description=body.description, force=body.force)
    response.headers["Location"] = f"/v1/mixes/{mix.name}"
    return {"mix": mix.to_json(), "warnings": weight_warnings(members)}


@router.post(
    "/from-image",
    status_code=201,
    summary="A mix from an image's LoRA stack (as `lorahub mix from-image`)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                t: {"schema": {"type": "string", "format": "binary"}} for t in UPLOAD_TYPES
            },
        }
    },
)
def create_mix_from_image(
    upload: Annotated[Upload, Depends(image_upload)],
    registry: Reg,
    response: Response,
    name: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    allow_missing: bool = False,
    force: bool = False,
    dry_run: bool = False,
) -> dict[str, Any]:
    """The body is an A1111, ComfyUI or lorahub image (at most 20 MB). Its LoRAs are resolved by
    hash, then name; `dry_run` only reports them (200). A member not registered is a 404 naming
    it and nothing is saved, unless `allow_missing` (the found ones are then saved)."""
    from lorahub.library.recipes import mix_from_image

    if not dry_run:
        check_name(name or "", "mix name")
    with upload.saved() as path:
        result = mix_from_image(
            registry, path, name or "", allow_missing=allow_missing, force=force, dry_run=dry_run
        )
    if result.missing and not (allow_missing or dry_run):
        raise NotFoundError(
            f"not registered: {result.missing_text()}; nothing saved (allow_missing saves the rest)"
        )
    if result.mix is None:
        response.status_code = 200
    else:
        response.headers["Location"] = f"/v1/mixes/{result.mix.name}"
    return {**result.to_json(), "image": upload.filename}


@router.delete("/{name}", summary="Remove a mix (its adapters stay)")
def remove_mix(name: str, registry: Reg) -> dict[str, Any]:
    """Remove the mix; 404 when there is none by that name."""
    registry.remove_mix(name)
    return {"removed": name}
