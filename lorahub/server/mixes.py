"""`/v1/mixes`: list, show, create (through the registry's validation, as `lorahub mix create`), remove."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response

from lorahub.server.schemas import MixBody, blocks
from lorahub.server.state import registry_dep
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


@router.delete("/{name}", summary="Remove a mix (its adapters stay)")
def remove_mix(name: str, registry: Reg) -> dict[str, Any]:
    """Remove the mix; 404 when there is none by that name."""
    registry.remove_mix(name)
    return {"removed": name}
