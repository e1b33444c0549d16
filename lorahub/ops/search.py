"""Find a mix's weights: the base+mix denoising loss on example images, minimised by nevergrad.

A weight vector is scored by the mean squared error of the UNet's prediction (the weighted
adapters active as the inference engine applies them) on the examples' latents at fixed noise
and timesteps drawn from the seed, plus a small L1 penalty; nevergrad's NGOpt proposes the
vectors, starting from uniform weights and each adapter alone. Latents are encoded once, and so
are the captions unless an adapter changes the text encoder. Deterministic for a seed.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from lorahub.errors import InvalidInputError, UnsupportedError
from lorahub.types import AdapterSpec

Progress = Callable[..., None] | None
DECIMALS = 3  # weights are scored (and saved) rounded: the mix saved is the mix scored


@dataclass(frozen=True)
class SearchOptions:
    """How hard to look: loss evaluations, seed, timesteps per image, L1 penalty, weight bounds."""

    budget: int = 40
    seed: int = 0
    timesteps: int = 4
    l1: float = 0.002
    lower: float = -1.0
    upper: float = 1.5

    def check(self) -> None:
        """One clear line for settings the search cannot use."""
        if self.budget < 1:
            raise InvalidInputError(
                f"--budget must be at least 1 loss evaluation, got {self.budget} (40 is a good start)"
            )
        if self.timesteps < 1:
            raise InvalidInputError(f"timesteps must be at least 1, got {self.timesteps}")
        if not self.lower < self.upper:
            raise InvalidInputError(f"weight bounds {self.lower}..{self.upper} are empty")


@dataclass(frozen=True)
class WeightSearch:
    """The best weights found, with the loss of the best, of uniform weights and of each alone."""

    names: tuple[str, ...]
    weights: tuple[float, ...]
    loss: float
    uniform: float
    alone: tuple[float, ...]
    evaluations: int
    seconds: float
    images: int
    options: SearchOptions

    def to_json(self) -> dict[str, Any]:
        return {
            "weights": dict(zip(self.names, self.weights, strict=True)),
            "loss": self.loss,
            "uniform_loss": self.uniform,
            "alone_loss": dict(zip(self.names, self.alone, strict=True)),
            "evaluations": self.evaluations,
            "seconds": round(self.seconds, 3),
            "images": self.images,
            "optimizer": "nevergrad NGOpt",
            "options": asdict(self.options),
        }


Example = tuple[Any, str]  # (PIL image, caption)


class MixScorer:
    """The denoising loss of `runtime`'s base with `specs` at given weights, on fixed examples."""

    def __init__(
        self,
        runtime: Any,
        specs: Sequence[AdapterSpec],
        examples: Sequence[Example],
        *,
        seed: int = 0,
        timesteps: int = 4,
    ) -> None:
        import torch
        from diffusers import DDPMScheduler

        from lorahub.training.setup import models_of

        pipe = runtime.pipe
        scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        self.runtime, self.specs = runtime, list(specs)
        self.m = models_of(pipe, scheduler, pipe.unet.dtype, pipe.device)
        with runtime.use(self._weighted([0.0] * len(specs))) as adapters:
            self.text_lora = any(c != "unet" for a in adapters for c in a.components)
        self.images, self.timesteps = len(examples), timesteps
        self.captions = [c for _, c in examples for _ in range(timesteps)]
        with torch.no_grad():
            self._fix_inputs([im for im, _ in examples], seed, timesteps)
            self.text = None if self.text_lora else self._encode()

    def _fix_inputs(self, images: list[Any], seed: int, timesteps: int) -> None:
        """Latents (each image once per timestep), noise and stratified timesteps from `seed`."""
        import torch

        from lorahub.training.step import encode_images, scale_latents, target_for

        m, size = self.m, self.m.default_resolution
        pixels = torch.stack([_pixels(im, size) for im in images])
        mean, _ = encode_images(m, pixels)
        latents = scale_latents(m, mean.float()).repeat_interleave(timesteps, dim=0)
        gen = torch.Generator().manual_seed(seed)
        noise = torch.randn(latents.shape, generator=gen)
        total = m.scheduler.config.num_train_timesteps
        strata = torch.arange(timesteps).repeat(len(images))
        offsets = torch.rand(len(strata), generator=gen)
        steps = ((strata + offsets) * total / timesteps).long().clamp(0, total - 1)
        self.noisy = m.scheduler.add_noise(latents, noise, steps).to(m.device)
        self.target = target_for(m, latents, noise, steps).to(m.device)
        self.steps = steps.to(m.device)
        self.time_ids = torch.tensor([[size, size, 0, 0, size, size]] * len(strata))

    def _encode(self) -> tuple[Any, Any]:
        from lorahub.training.step import encode_text

        return encode_text(self.m, self.captions)

    def _weighted(self, weights: Sequence[float]) -> list[AdapterSpec]:
        return [
            replace(s, weight=float(w), te_weight=None, block_weights=None)
            for s, w in zip(self.specs, weights, strict=True)
        ]

    def loss(self, weights: Sequence[float]) -> float:
        """Mean squared error of the prediction with the adapters at `weights`."""
        import torch
        import torch.nn.functional as F

        from lorahub.training.step import Batch, predict

        with self.runtime.use(self._weighted(weights)), torch.no_grad():
            hidden, pooled = self.text or self._encode()
            batch = Batch(None, None, hidden, pooled, self.time_ids)
            pred = predict(self.m, self.noisy, self.steps, batch)
            return float(F.mse_loss(pred.float(), self.target.float()))


def _pixels(image: Any, size: int) -> Any:
    """A PIL image as a [-1, 1] CHW tensor at size×size (resized, centre-cropped to a square)."""
    import numpy as np
    import torch
    from PIL import Image, ImageOps

    square = ImageOps.fit(image.convert("RGB"), (size, size), Image.Resampling.BICUBIC)
    arr = np.asarray(square, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def search_weights(
    scorer: MixScorer, options: SearchOptions = SearchOptions(), progress: Progress = None
) -> WeightSearch:
    """Minimise loss + l1·Σ|w| over the scorer's adapters with nevergrad's NGOpt, `budget`
    evaluations; the first candidates are uniform weights and each adapter alone."""
    options.check()
    ng, np = _nevergrad()
    start, step = time.perf_counter(), progress or (lambda *a, **k: None)
    n = len(scorer.specs)
    refs = [(round(1 / n, DECIMALS),) * n] + [
        tuple(1.0 if j == i else 0.0 for j in range(n)) for i in range(n)
    ]
    losses: dict[tuple[float, ...], float] = {}

    def loss_of(w: tuple[float, ...]) -> float:
        if w not in losses:
            losses[w] = scorer.loss(w)
        return losses[w]

    def objective(w: tuple[float, ...]) -> float:
        return loss_of(w) + options.l1 * sum(abs(x) for x in w)

    param = ng.p.Array(init=np.array(refs[0]), lower=options.lower, upper=options.upper)
    param.random_state = np.random.RandomState(options.seed)
    opt = ng.optimizers.NGOpt(parametrization=param, budget=options.budget, num_workers=1)
    for ref in reversed(refs[: options.budget]):  # asked last in, first out: uniform first
        opt.suggest(np.array(ref))
    step(0, total=options.budget, status="scoring uniform weights")
    try:
        best = _minimise(
            opt, objective, options.budget, lambda w: step(1, status=f"best loss {loss_of(w):.5f}")
        )
    finally:
        _stop_threads(opt)
    return WeightSearch(
        names=tuple(s.name for s in scorer.specs),
        weights=best[1],
        loss=loss_of(best[1]),
        uniform=loss_of(refs[0]),
        alone=tuple(loss_of(r) for r in refs[1:]),
        evaluations=len(losses),
        seconds=time.perf_counter() - start,
        images=scorer.images,
        options=replace(options, timesteps=scorer.timesteps),
    )


def _minimise(
    opt: Any,
    objective: Callable[[tuple[float, ...]], float],
    budget: int,
    on_step: Callable[[tuple[float, ...]], None],
) -> tuple[float, tuple[float, ...]]:
    """Ask, score (weights rounded), tell `budget` times; the best (objective, weights) seen."""
    best: tuple[float, tuple[float, ...]] | None = None
    with warnings.catch_warnings():
        # nevergrad gives scipy's Cobyla a final radius that scipy corrects, with a warning
        warnings.filterwarnings("ignore", message=".*RHOEND", category=UserWarning)
        for _ in range(budget):
            candidate = opt.ask()
            w = tuple(round(float(x), DECIMALS) + 0.0 for x in candidate.value)
            value = objective(w)
            opt.tell(candidate, value)
            if best is None or value < best[0]:
                best = (value, w)
            on_step(best[1])
    assert best is not None
    return best


def _stop_threads(opt: Any) -> None:
    """Stop the thread a recast optimizer runs its library in (NGOpt picks scipy's Cobyla for
    few weights) now: left to the garbage collector, it keeps the process from exiting."""
    while opt is not None:
        thread = getattr(opt, "_messaging_thread", None)
        if thread is not None:
            thread.stop()
        opt = getattr(opt, "optim", None)


def _nevergrad() -> tuple[Any, Any]:
    """nevergrad and numpy, or one line naming the extra that installs it."""
    try:
        import nevergrad as ng
        import numpy as np
    except ImportError:
        raise UnsupportedError(
            "mix search needs nevergrad: pip install 'lorahub[search]'"
        ) from None
    return ng, np
