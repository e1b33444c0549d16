"""An uploaded image as the request body: its type checked, kept in a temporary file while used."""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Query, Request
from starlette.exceptions import HTTPException

from lorahub.errors import InvalidInputError

MAX_IMAGE_BYTES = 20_000_000  # an upscaled A1111 PNG is a few MB
UPLOAD_TYPES = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}
UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


@dataclass(frozen=True)
class Upload:
    """The bytes of one uploaded image and the file name it is known by."""

    filename: str
    data: bytes

    @contextlib.contextmanager
    def saved(self) -> Iterator[Path]:
        """The image written to a private temporary folder under its name (removed after)."""
        with tempfile.TemporaryDirectory(prefix="lorahub-upload-") as folder:
            path = Path(folder) / self.filename
            path.write_bytes(self.data)
            yield path


def upload_name(filename: str | None, suffix: str) -> str:
    """A plain file name for the upload: no folders, no odd characters, the type's suffix."""
    stem = UNSAFE.sub("_", Path(filename or "").stem).strip(" .")[:100] or "image"
    return stem + suffix


async def image_upload(
    request: Request,
    filename: Annotated[
        str | None, Query(max_length=200, description="the image's file name, as shown")
    ] = None,
) -> Upload:
    """FastAPI dependency: the body as an image (Content-Type image/png, image/jpeg or image/webp)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in UPLOAD_TYPES:
        shown = ctype or "none"
        raise HTTPException(
            415,
            f"send the image as the body with Content-Type image/png, image/jpeg or image/webp (got {shown})",
        )
    data = await request.body()
    if not data:
        raise InvalidInputError("the request body is empty: send the image as the body")
    return Upload(upload_name(filename, UPLOAD_TYPES[ctype]), data)
