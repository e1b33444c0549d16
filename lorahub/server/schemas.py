"""Request bodies of the HTTP API, with the limits that keep one request from taking the server."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lorahub.types import MAX_WEIGHT

MAX_PROMPT = 2000
MAX_STEPS = 150
MAX_SIDE = 2048
MAX_IMAGES = 8
MAX_ADAPTERS = 16
MAX_SEED = 2**63 - 1
MAX_BODY_BYTES = 1_000_000

Block = Literal["down", "mid", "up"]
BlockWeight = Annotated[float, Field(ge=-MAX_WEIGHT, le=MAX_WEIGHT)]


def blocks(weights: dict[Block, BlockWeight] | None) -> dict[str, float] | None:
    """Block weights as the plain dict MixMember takes."""
    return {str(k): float(v) for k, v in weights.items()} if weights else None


def multiple_of_8(value: int | None) -> int | None:
    """Image sides must be multiples of 8 (the VAE downsamples by 8)."""
    if value is not None and value % 8:
        raise ValueError(f"must be a multiple of 8, got {value}")
    return value


class Strict(BaseModel):
    """Unknown fields are errors (a typo must not be silently ignored); NaN/inf refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class AdapterWeight(Strict):
    """One adapter of a generation: a reference (NAME, NAME@VERSION or hash) and its weights."""

    name: str = Field(
        min_length=1,
        max_length=200,
        description="NAME, NAME@VERSION or an AutoV2/AutoV3 hash prefix",
    )
    weight: Annotated[float, Field(ge=-MAX_WEIGHT, le=MAX_WEIGHT, description="UNet weight")] = 1.0
    te_weight: Annotated[
        float | None,
        Field(ge=-MAX_WEIGHT, le=MAX_WEIGHT, description="text-encoder weight (default: weight)"),
    ] = None
    block_weights: Annotated[
        dict[Block, BlockWeight] | None,
        Field(description="multipliers of UNet down/mid/up blocks"),
    ] = None


class GenerateBody(Strict):
    """`POST /v1/generate`: unset fields take the engine's defaults (the same as `lorahub generate`)."""

    prompt: str = Field(max_length=MAX_PROMPT, description="may carry <lora:NAME:WEIGHT> tags")
    negative_prompt: Annotated[str | None, Field(max_length=MAX_PROMPT)] = None
    adapters: list[AdapterWeight] = Field(default_factory=list, max_length=MAX_ADAPTERS)
    mix: Annotated[
        str | None, Field(min_length=1, max_length=200, description="a registered mix name")
    ] = None
    steps: Annotated[int | None, Field(ge=1, le=MAX_STEPS)] = None
    guidance: Annotated[float | None, Field(ge=0.0, le=50.0)] = None
    seed: Annotated[
        int | None,
        Field(
            ge=0, le=MAX_SEED, description="default 0, as `lorahub generate`; image i uses seed + i"
        ),
    ] = None
    width: Annotated[int | None, Field(ge=8, le=MAX_SIDE, description="a multiple of 8")] = None
    height: Annotated[int | None, Field(ge=8, le=MAX_SIDE, description="a multiple of 8")] = None
    n: Annotated[int, Field(ge=1, le=MAX_IMAGES, description="number of images")] = 1
    scheduler: Annotated[
        str | None,
        Field(max_length=40, description="ddim, euler, euler_a, dpm++, ... (default: the base's)"),
    ] = None
    clip_skip: Annotated[int | None, Field(ge=0, le=12)] = None

    @field_validator("width", "height")
    @classmethod
    def _sides(cls, value: int | None) -> int | None:
        return multiple_of_8(value)


class PreviewBody(Strict):
    """`POST /v1/adapters/{name}/preview`: defaults render the trigger words with seed 0."""

    prompt: Annotated[
        str | None, Field(max_length=MAX_PROMPT, description="default: the trigger words")
    ] = None
    steps: Annotated[int | None, Field(ge=1, le=MAX_STEPS)] = None
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)] = 0
    width: Annotated[int | None, Field(ge=8, le=MAX_SIDE)] = None
    height: Annotated[int | None, Field(ge=8, le=MAX_SIDE)] = None

    @field_validator("width", "height")
    @classmethod
    def _sides(cls, value: int | None) -> int | None:
        return multiple_of_8(value)


class TagsBody(Strict):
    """`POST`/`DELETE /v1/adapters/{name}/tags`."""

    tags: list[str] = Field(min_length=1, max_length=100)


class MixMemberBody(Strict):
    """One member of a mix: the same fields as `MixMember.to_json()`."""

    ref: str = Field(min_length=1, max_length=200)
    weight: Annotated[float, Field(ge=-MAX_WEIGHT, le=MAX_WEIGHT)] = 1.0
    te_weight: Annotated[float | None, Field(ge=-MAX_WEIGHT, le=MAX_WEIGHT)] = None
    block_weights: dict[Block, BlockWeight] | None = None


class MixBody(Strict):
    """`POST /v1/mixes`: create (or with `force`, replace) a named mix."""

    name: str = Field(min_length=1, max_length=200)
    members: list[MixMemberBody] = Field(min_length=1, max_length=MAX_ADAPTERS)
    description: Annotated[str | None, Field(max_length=MAX_PROMPT)] = None
    force: bool = False


class GenerateResponse(BaseModel):
    """`POST /v1/generate` as JSON: base64 PNGs (with the CLI's text chunks) and the record."""

    images: list[str]
    record: dict


class ErrorDetail(BaseModel):
    """What went wrong: a stable `code` (not_found, invalid_input, ...) and one line for people."""

    code: str
    message: str


class ErrorBody(BaseModel):
    """The body of every 4xx/5xx answer."""

    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (400, "invalid input (bad name, weight, tag)"),
        (401, "missing or wrong bearer token"),
        (404, "unknown adapter(s), mix or route"),
        (409, "name already taken"),
        (413, "body over 1 MB (an uploaded image: over 20 MB)"),
        (421, "Host header not served here (DNS rebinding guard; `--allowed-host`)"),
        (415, "a body of the wrong type (JSON expected; an image for `from-image`)"),
        (
            422,
            "malformed body or parameters, adapters for another base family, or over the work bound",
        ),
        (429, "generation queue full (see Retry-After)"),
        (507, "the disk refused a write (full, quota, read-only); nothing was left behind"),
    )
}
