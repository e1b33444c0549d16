"""`POST /v1/generate` and `POST /v1/adapters/{ref}/preview`: resolve names here, run on the worker."""

from __future__ import annotations

import base64
import datetime
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Body, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from lorahub.app import generate as use_case
from lorahub.app.generate import GenerationOrder, Target
from lorahub.server.schemas import MAX_PROMPT, GenerateBody, GenerateResponse, PreviewBody, blocks
from lorahub.server.state import ServerState, open_registry, state
from lorahub.types import MixMember

if TYPE_CHECKING:
    from lorahub.inference.requests import GenerationRequest

router = APIRouter(tags=["generate"])


@router.post(
    "/v1/generate",
    summary="Generate images with adapters and/or a mix",
    responses={
        200: {
            "model": GenerateResponse,
            "content": {"image/png": {}},
            "description": "JSON, or the first image as PNG with `Accept: image/png`",
        }
    },
)
async def generate(body: GenerateBody, request: Request) -> Response:
    """JSON `{"images": [base64 PNG], "record": {...}}`, or the first image as PNG (`Accept: image/png`)."""
    st = state(request)
    gen = await run_in_threadpool(resolve_body, st, body)
    result = await run_generation(st, gen, request)
    pngs = (await run_in_threadpool(use_case.record_result, result)).pngs
    if wants_png(request.headers.get("accept", "")):
        return Response(
            pngs[0], media_type="image/png", headers=png_headers(result.record, len(pngs))
        )
    images = [base64.b64encode(p).decode("ascii") for p in pngs]
    return JSONResponse({"images": images, "record": result.record})


@router.post(
    "/v1/adapters/{ref}/preview",
    tags=["adapters"],
    summary="Generate and store a preview from the adapter's trigger words (fixed seed)",
)
async def make_preview(
    ref: str, request: Request, body: Annotated[PreviewBody | None, Body()] = None
) -> dict[str, Any]:
    """Render one image with only this adapter, store it as the adapter's preview; returns the record."""
    st = state(request)
    body = body or PreviewBody()
    gen = await run_in_threadpool(resolve_preview_body, st, ref, body)
    result = await run_generation(st, gen, request)
    png = (await run_in_threadpool(use_case.record_result, result)).pngs[0]
    record = await run_in_threadpool(store_preview, st, ref, png)
    return {
        "adapter": record,
        "preview_url": f"/v1/adapters/{ref}/preview",
        "record": result.record,
    }


SETTINGS = (
    "negative_prompt",
    "steps",
    "guidance",
    "seed",
    "width",
    "height",
    "n",
    "scheduler",
    "clip_skip",
)


def resolve_body(st: ServerState, body: GenerateBody) -> GenerationRequest:
    """The body as a checked GenerationRequest (mix first, tags parsed), before queueing."""
    adapters = tuple(
        MixMember(
            ref=a.name,
            weight=a.weight,
            te_weight=a.te_weight,
            block_weights=blocks(a.block_weights),
        )
        for a in body.adapters
    )
    settings = {key: getattr(body, key) for key in SETTINGS}
    order = GenerationOrder(prompt=body.prompt, adapters=adapters, mix=body.mix, settings=settings)
    with open_registry(st) as registry:
        return use_case.resolve_generation(registry, order, target(st))


def resolve_preview_body(st: ServerState, ref: str, body: PreviewBody) -> GenerationRequest:
    """One adapter at weight 1 on the body's prompt or its trigger words (for a preview)."""
    settings = {"steps": body.steps, "seed": body.seed, "width": body.width, "height": body.height}
    with open_registry(st) as registry:
        return use_case.resolve_preview(registry, ref, body.prompt, settings, target(st))


def target(st: ServerState) -> Target:
    """The server's base: its family (cached by the state) and its work bound."""
    return Target(st.base, repr(st.base), st.max_work, family_of=lambda: st.base_family)


async def run_generation(st: ServerState, gen: Any, request: Request) -> Any:
    """One request through the engine's worker (dropped if its client leaves before it starts)."""
    start = time.perf_counter()
    result = await st.worker.generate(gen, request.is_disconnected)
    seconds = time.perf_counter() - start
    st.metrics.count_generation(seconds, len(result.images))
    st.remember(summary(gen, result.record, seconds))
    return result


def summary(gen: Any, record: dict[str, Any], seconds: float) -> dict[str, Any]:
    """What /v1/status lists about a past generation (no images)."""
    return {
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "prompt": gen.prompt[:MAX_PROMPT],
        "adapters": [
            {"name": a.name, "weight": a.weight, "te_weight": a.te_weight} for a in gen.adapters
        ],
        "seed": record.get("seed", gen.seed),
        "steps": record.get("steps", gen.steps),
        "width": record.get("width", gen.width),
        "height": record.get("height", gen.height),
        "n": gen.n,
        "seconds": round(seconds, 4),
    }


def store_preview(st: ServerState, ref: str, png: bytes) -> dict[str, Any]:
    """Attach `png` as the adapter's preview (the registry copies it into the previews folder)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "preview.png"
        path.write_bytes(png)
        with open_registry(st) as registry:
            return registry.set_preview(ref, path).to_json()


def wants_png(accept: str) -> bool:
    """True when the client asks for image/png ahead of (or without) JSON."""
    types = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    if "image/png" not in types:
        return False
    return "application/json" not in types or types.index("image/png") < types.index(
        "application/json"
    )


def png_headers(record: dict[str, Any], count: int) -> dict[str, str]:
    """A few facts of the record as headers (the full record is in the PNG's text chunks)."""
    headers = {"X-Lorahub-Images": str(count)}
    if record.get("seed") is not None:
        headers["X-Lorahub-Seed"] = str(record["seed"])
    return headers
