"""`/v1/adapters`: list with filters, one adapter with lineage and publications, tags, preview."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse

from lorahub.errors import NotFoundError
from lorahub.server.images import image_json, page_images
from lorahub.server.schemas import TagsBody
from lorahub.server.state import registry_dep

router = APIRouter(prefix="/v1/adapters", tags=["adapters"])
Reg = Annotated[Any, Depends(registry_dep)]
SORTS = ("name", "created", "size", "rank")
PREVIEW_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
}


@router.get("", summary="List adapters (the filters of `lorahub list`)")
def list_adapters(
    registry: Reg,
    tag: Annotated[list[str], Query(description="repeat for several: all must match")] = [],  # noqa: B006
    base: Annotated[str | None, Query(description="base family, e.g. sd1, sdxl, tiny-sd1")] = None,
    format: Annotated[str | None, Query(description="diffusers, kohya, peft, lycoris, ...")] = None,
    q: Annotated[str | None, Query(max_length=200, description="full-text search")] = None,
    min_rank: Annotated[int | None, Query(ge=0)] = None,
    max_rank: Annotated[int | None, Query(ge=0)] = None,
    published: bool | None = None,
    sort: Annotated[str, Query(pattern="^(name|created|size|rank)$")] = "name",
    limit: Annotated[int | None, Query(ge=1, le=10_000)] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """Adapters matching every filter, in `AdapterRecord.to_json()` shape; a page of them with
    limit/offset (`total`: how many match in all, `all`: how many are registered; `images`:
    {ref: {count, items: [{position, url}]}} for those with example images, the first 6)."""
    filters = dict(
        tags=tag,
        base=base,
        format=format,
        min_rank=min_rank,
        max_rank=max_rank,
        search=q,
        published=published,
    )
    records = registry.list_adapters(**filters, sort=sort, limit=limit, offset=offset)
    paged = limit is not None or offset
    total = registry.count_adapters(**filters) if paged else len(records)
    return {
        "adapters": [r.to_json() for r in records],
        "count": len(records),
        "total": total,
        "offset": offset,
        "all": registry.count_adapters(),
        "images": page_images(registry, records),
    }


@router.get("/facets", summary="Every tag and base family in use (filter choices)")
def facets(registry: Reg) -> dict[str, Any]:
    """The tags and base families the registry holds, without loading any adapter."""
    return registry.facets()


@router.get("/{ref}", summary="One adapter: record, lineage, publications, mixes, example images")
def get_adapter(ref: str, registry: Reg) -> dict[str, Any]:
    """Everything the registry knows about one adapter (NAME, NAME@VERSION or hash prefix);
    `images` as `GET /v1/adapters/{ref}/images` lists them."""
    record = registry.get_adapter(ref)
    return {
        "adapter": record.to_json(),
        "lineage": [e.to_json() for e in registry.lineage(record.ref)],
        "publications": [p.to_json() for p in record.publications],
        "mixes": [m.name for m in registry.list_mixes() if record.ref in m.member_names],
        "preview_url": f"/v1/adapters/{record.ref}/preview" if record.preview else None,
        "images": [image_json(record.ref, i) for i in registry.images(record.ref)],
    }


@router.post("/{ref}/tags", summary="Add tags")
def add_tags(ref: str, body: TagsBody, registry: Reg) -> dict[str, Any]:
    """Add tags (the same validation as `lorahub tag`); returns the updated record."""
    return {"adapter": registry.tag(ref, body.tags).to_json()}


@router.delete("/{ref}/tags", summary="Remove tags")
def remove_tags(ref: str, body: TagsBody, registry: Reg) -> dict[str, Any]:
    """Remove tags (absent ones are ignored); returns the updated record."""
    return {"adapter": registry.untag(ref, body.tags).to_json()}


@router.get(
    "/{ref}/preview",
    summary="The adapter's preview image",
    response_class=FileResponse,
    responses={
        200: {"content": {"image/png": {}, "image/jpeg": {}}},
        404: {"description": "no preview"},
    },
)
def get_preview(ref: str, registry: Reg) -> FileResponse:
    """The stored preview image, or 404 when the adapter has none."""
    path = registry.preview_path(ref)
    if path is None or not path.is_file():
        raise NotFoundError(f"adapter {ref!r} has no preview image")
    media = PREVIEW_TYPES.get(path.suffix.lower(), "application/octet-stream")
    return FileResponse(path, media_type=media, headers={"Cache-Control": "no-cache"})
