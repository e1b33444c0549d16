"""Running several requests in one denoising loop, whatever their adapters (a heterogeneous batch).

Requests share a loop when `batch_key` matches (base, size, steps, scheduler, guidance). Each
request's prompt is encoded alone, with its own text-encoder adapters active, before the loop;
the embeddings are concatenated; the UNet layers add each row's own terms (`inference.batched`),
classifier-free guidance rows keeping their request's set. Each image row draws its noise from
its own generator (seed + i), so an image does not depend on its batch-mates. A batch whose rows
all use one set takes the single-set path (terms bound to the layers, fuse-when-hot included).

The batch pins every adapter it uses in the resident cache; when the next request's adapters no
longer fit beside them, the batch is split there and the rest runs in the next loop. A member
that fails (unknown file, incompatible layer, capacity) fails alone; the others complete. LoHa
and LoKr (held as dense ΔW) batch like LoRA. Compiled pipelines (one slot set) run one by one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

from lorahub.errors import CapacityError, LorahubError
from lorahub.inference.activate import selections_for
from lorahub.inference.batched import RowBinding
from lorahub.inference.pipelines import scheduler_class
from lorahub.inference.requests import GenerationRequest, GenerationResult

Outcome = GenerationResult | BaseException
EMBEDS = (
    "prompt_embeds",
    "negative_prompt_embeds",
    "pooled_prompt_embeds",
    "negative_pooled_prompt_embeds",
)


def batch_key(request: GenerationRequest) -> tuple:
    """Requests with equal keys can share a denoising loop."""
    scheduler = request.scheduler
    if scheduler:
        try:
            scheduler = scheduler_class(scheduler)
        except LorahubError:
            pass  # an unknown name fails when its request runs, alone
    return (request.base, request.width, request.height, request.steps, scheduler, request.guidance)


def chunk_rows(requests: Sequence[GenerationRequest], max_rows: int) -> list[list[int]]:
    """Indices of `requests` grouped by `batch_key`, each chunk at most `max_rows` images
    (a request of more images than that runs alone)."""
    groups: dict[tuple, list[list[int]]] = {}
    for i, req in enumerate(requests):
        chunks = groups.setdefault(batch_key(req), [[]])
        rows = sum(requests[j].n for j in chunks[-1])
        if chunks[-1] and rows + req.n > max_rows:
            chunks.append([])
        chunks[-1].append(i)
    return [chunk for chunks in groups.values() for chunk in chunks]


def run_batch(rt: Any, requests: Sequence[GenerationRequest]) -> list[Outcome]:
    """Each request's result, or the exception it alone failed with (same order)."""
    outcomes: list[Outcome | None] = [None] * len(requests)
    todo = []
    for i, req in enumerate(requests):
        try:
            rt.check(req)
            todo.append(i)
        except Exception as exc:
            outcomes[i] = exc
    while todo:
        if rt.config.compile or len(todo) == 1:  # compiled slots hold one set at a time
            i = todo.pop(0)
            outcomes[i] = _alone(rt, requests[i])
            continue
        group, held = _acquire(rt, requests, todo, outcomes)
        if not group:
            continue
        try:
            results: list[Outcome] = _sample_group(rt, [requests[i] for i in group], held)
        except Exception as exc:
            results = [exc]
        finally:
            for adapters in held:
                rt.resident.release(adapters)
        if len(results) != len(group):  # the loop failed: find out who, each alone
            results = [_alone(rt, requests[i]) for i in group]
        for i, result in zip(group, results, strict=True):
            outcomes[i] = result
    return [o for o in outcomes if o is not None]


def _alone(rt: Any, request: GenerationRequest) -> Outcome:
    try:
        return rt.run(request)
    except Exception as exc:
        return exc


def _acquire(
    rt: Any, requests: Sequence[GenerationRequest], todo: list[int], outcomes: list
) -> tuple[list[int], list[list[Any]]]:
    """Pin the adapters of the next requests in `todo` until one does not fit beside them."""
    group: list[int] = []
    held: list[list[Any]] = []
    for i in list(todo):
        try:
            adapters = rt.resident.acquire(list(requests[i].adapters))
        except CapacityError as exc:
            if group:
                break  # split here: this request leads the next loop
            outcomes[i] = exc
        except Exception as exc:
            outcomes[i] = exc
        else:
            group.append(i)
            held.append(adapters)
        todo.remove(i)
    return group, held


def _sample_group(
    rt: Any, requests: list[GenerationRequest], held: list[list[Any]]
) -> list[Outcome]:
    """One denoising loop for `requests` (their adapters resident and pinned)."""
    start = time.perf_counter()
    sets = [selections_for(list(r.adapters), a) for r, a in zip(requests, held, strict=True)]
    signatures = [tuple(s.signature for s in sel) for sel in sets]
    order = sorted(range(len(requests)), key=lambda k: repr(signatures[k]))
    same = len(set(signatures)) == 1
    if same:
        rt._switch(list(requests[0].adapters), held[0], start)
    elif rt.fuser.fused:
        rt.fuser.unfuse()
    embeds = [_encode(rt, requests[k], None if same else sets[k]) for k in order]
    binding: Any = nullcontext()
    if not same:
        rt.activator.activate([])
        rt.hot_count = 0
        binding = RowBinding([sets[k] for k in order for _ in range(requests[k].n)])
    swap_s = time.perf_counter() - start
    t0 = time.perf_counter()
    with binding:
        images = _denoise(rt, [requests[k] for k in order], embeds)
    gen_s = time.perf_counter() - t0
    _observe(rt, requests, gen_s)
    results: list[Outcome] = [GenerationResult([])] * len(requests)
    for k in order:
        mine, images = images[: requests[k].n], images[requests[k].n :]
        record = rt._record(requests[k], mine, swap_s, gen_s)
        record["timings"]["batch"] = len(requests)
        results[k] = GenerationResult(mine, record)
    return results


def _observe(rt: Any, requests: list[GenerationRequest], gen_s: float) -> None:
    metrics = rt.metrics
    metrics.inc("batches")
    metrics.observe("batch_requests", len(requests))
    metrics.observe("batch_rows", sum(r.n for r in requests))
    metrics.observe("generation_seconds", gen_s)


def _encode(rt: Any, req: GenerationRequest, selections: list | None) -> tuple:
    """The request's prompt embeddings, with its own adapters active (None: already active)."""
    import torch

    pipe = rt.pipe
    if selections is not None:
        rt.activator.activate(selections)
    kwargs: dict[str, Any] = {
        "prompt": [req.prompt] * req.n,
        "device": pipe._execution_device,
        "num_images_per_prompt": 1,
        "do_classifier_free_guidance": _guided(pipe, req.guidance),
        "negative_prompt": [req.negative_prompt] * req.n if req.negative_prompt else None,
    }
    if req.clip_skip:
        kwargs["clip_skip"] = req.clip_skip
    with torch.inference_mode():
        return tuple(pipe.encode_prompt(**kwargs))


def _guided(pipe: Any, guidance: float) -> bool:
    """Whether the pipeline runs classifier-free guidance (diffusers' own rule)."""
    return guidance > 1 and getattr(pipe.unet.config, "time_cond_proj_dim", None) is None


def _denoise(rt: Any, requests: list[GenerationRequest], embeds: list[tuple]) -> list[Any]:
    """The pipeline over the concatenated embeddings, one CPU generator per image row."""
    import torch

    first = requests[0]
    kwargs: dict[str, Any] = {}
    for name, parts in zip(EMBEDS, zip(*embeds, strict=True), strict=False):
        if all(p is not None for p in parts):
            kwargs[name] = torch.cat(parts)
    rt.pipe.scheduler = rt._scheduler(first.scheduler)
    generators = [
        torch.Generator("cpu").manual_seed(r.seed + i) for r in requests for i in range(r.n)
    ]
    with torch.inference_mode():
        out = rt.pipe(
            **kwargs,
            num_inference_steps=first.steps,
            guidance_scale=first.guidance,
            generator=generators,
            width=first.width,
            height=first.height,
            output_type="pil",
        )
    return list(out.images)
