"""`POST /v1/generate` and `POST /v1/adapters/{ref}/preview`: resolve names here, run on the worker."""

from __future__ import annotations

import base64
import datetime
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from lorahub.server.schemas import MAX_PROMPT, GenerateBody, GenerateResponse, PreviewBody, blocks
from lorahub.server.state import ServerState, open_registry, state
from lorahub.server.work import check_work
from lorahub.types import AdapterSpec, MixMember

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
    prompt, specs = await run_in_threadpool(resolve_body, st, body)
    gen = build_request(body, prompt, specs, st)
    result = await run_generation(st, gen, request)
    pngs = await run_in_threadpool(encode_all, result)
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
    spec, words = await run_in_threadpool(resolve_one, st, ref)
    prompt = body.prompt or ", ".join(words) or spec.name
    gen_body = GenerateBody(
        prompt=prompt, steps=body.steps, seed=body.seed, width=body.width, height=body.height
    )
    gen = build_request(gen_body, prompt, [spec], st)
    result = await run_generation(st, gen, request)
    png = (await run_in_threadpool(encode_all, result))[0]
    record = await run_in_threadpool(store_preview, st, ref, png)
    return {
        "adapter": record,
        "preview_url": f"/v1/adapters/{ref}/preview",
        "record": result.record,
    }


def resolve_body(st: ServerState, body: GenerateBody) -> tuple[str, list[AdapterSpec]]:
    """The prompt without `<lora:...>` tags, and every adapter (mix first) resolved and checked."""
    from lorahub.inference.requests import parse_prompt_tags

    prompt, tag_members = parse_prompt_tags(body.prompt)
    members = [
        MixMember(
            ref=a.name,
            weight=a.weight,
            te_weight=a.te_weight,
            block_weights=blocks(a.block_weights),
        )
        for a in body.adapters
    ] + tag_members
    with open_registry(st) as registry:
        specs = registry.resolve_request(members, body.mix)
    check_family(st, specs)
    return prompt, specs


def resolve_one(st: ServerState, ref: str) -> tuple[AdapterSpec, list[str]]:
    """One adapter at weight 1 and its trigger words (for a preview)."""
    with open_registry(st) as registry:
        record = registry.get_adapter(ref)
        spec = registry.resolve_members([MixMember(ref=record.ref)])[0]
    check_family(st, [spec])
    return spec, list(record.trigger_words)


def check_family(st: ServerState, specs: list[AdapterSpec]) -> None:
    """Refuse adapters made for another base family than the server's, before queueing."""
    from lorahub.inference.pipelines import check_families

    check_families(specs, st.base_family, repr(st.base))


def build_request(
    body: GenerateBody, prompt: str, specs: list[AdapterSpec], st: ServerState
) -> Any:
    """A GenerationRequest within the server's work bound; unset fields keep the engine's defaults."""
    from lorahub.inference.pipelines import scheduler_class
    from lorahub.inference.requests import GenerationRequest

    fields: dict[str, Any] = {"prompt": prompt, "adapters": tuple(specs), "n": body.n}
    for key in (
        "negative_prompt",
        "steps",
        "guidance",
        "seed",
        "width",
        "height",
        "scheduler",
        "clip_skip",
    ):
        value = getattr(body, key)
        if value is not None:
            fields[key] = value
    if body.scheduler is not None:
        scheduler_class(body.scheduler)  # an unknown name is a 400 now, not after queueing
    gen = GenerationRequest(**fields)
    gen.validate()
    check_work(gen, st.base_family, st.max_work)
    return gen


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


def encode_all(result: Any) -> list[bytes]:
    """Each image as PNG bytes carrying the same text chunks as the CLI writes."""
    from lorahub.inference.png import png_bytes

    return [png_bytes(image, result.record, i) for i, image in enumerate(result.images)]


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
