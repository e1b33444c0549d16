"""`/v1/adapters/{ref}/images`: an adapter's example images, served only from the previews folder."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse, Response

from lorahub.errors import BadFileError, NotFoundError
from lorahub.server.state import registry_dep

if TYPE_CHECKING:
    from lorahub.registry import Registry

router = APIRouter(prefix="/v1/adapters", tags=["adapters"])
Reg = Annotated[Any, Depends(registry_dep)]
IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
}
STRIP = 6  # images per gallery card
NOSNIFF = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}


def image_json(ref: str, image: Any) -> dict[str, Any]:
    """An `ImageRecord.to_json()` plus the URL that serves its file."""
    return {**image.to_json(), "url": f"/v1/adapters/{ref}/images/{image.position}"}


def page_images(registry: Registry, records: list[Any]) -> dict[str, Any]:
    """{ref: {count, items}} for a page of adapters with images (the first STRIP of each)."""
    found = registry.images_of([r.id for r in records], STRIP)
    out = {}
    for record in records:
        if record.id in found:
            count, first = found[record.id]
            items = [
                {"position": i.position, "url": image_json(record.ref, i)["url"]} for i in first
            ]
            out[record.ref] = {"count": count, "items": items}
    return out


@router.get(
    "/{ref}/images", summary="An adapter's example images, in order (the first is the preview)"
)
def list_images(ref: str, registry: Reg) -> dict[str, Any]:
    """Each image's record (`params`: the generation parameters it carries, or null) and URL."""
    record = registry.get_adapter(ref)
    images = [image_json(record.ref, i) for i in registry.images(record.ref)]
    return {"images": images, "count": len(images)}


@router.get(
    "/{ref}/images/{position}",
    summary="One example image (or a thumbnail of it with `size`)",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}}}},
)
def get_image(
    ref: str,
    position: int,
    registry: Reg,
    size: Annotated[int | None, Query(ge=16, le=512, description="longest side, in pixels")] = None,
) -> Response:
    """The stored file of the image at `position` (as listed), or a JPEG thumbnail of it."""
    record = registry.get_adapter(ref)
    match = [i for i in registry.images(record.ref) if i.position == position]
    if not match:
        raise NotFoundError(f"adapter {record.ref!r} has no image at position {position}")
    path = stored_file(match[0].file)
    if size is not None:
        return Response(thumbnail(path, size), media_type="image/jpeg", headers=NOSNIFF)
    media = IMAGE_TYPES.get(path.suffix.lower(), "application/octet-stream")
    return FileResponse(path, media_type=media, headers=NOSNIFF)


def stored_file(name: str) -> Path:
    """A file of the previews folder: never a path outside it (the row names a file lorahub wrote)."""
    from lorahub import paths

    root = paths.previews_dir().resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise NotFoundError(f"image file {name!r} is not in the previews folder")
    return path


def thumbnail(path: Path, size: int) -> bytes:
    """A JPEG at most `size` pixels on its longest side."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.draft("RGB", (size, size))
            img.thumbnail((size, size))
            out = io.BytesIO()
            img.convert("RGB").save(out, "JPEG", quality=85)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise BadFileError(f"{path.name} is not a readable image: {exc}") from None
    return out.getvalue()
