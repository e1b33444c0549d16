"""Low-rank maths: truncated SVD of a sum of LoRA products without building the full matrix.

ΔW = Σ cᵢ·BᵢAᵢ = B·A with B = [B₁ … Bₙ] (out × R) and A = [c₁A₁; …; cₙAₙ] (R × in), R = Σ rᵢ.
With B = Q_B·R_B and Aᵀ = Q_A·R_A (thin QR), ΔW = Q_B·(R_B·R_Aᵀ)·Q_Aᵀ, so the SVD of the small
core C = R_B·R_Aᵀ = U·S·Vᵀ gives ΔW = (Q_B·U)·S·(Q_A·V)ᵀ exactly. The singular values of the
core are those of ΔW, so ‖ΔW‖ and the error of every truncation follow from them exactly:
‖ΔW − ΔW_r‖_F / ‖ΔW‖_F = sqrt(Σ_{i>r} sᵢ² / Σ sᵢ²). Work is O((out+in)·R²), memory O((out+in)·R).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

COMPUTE_DTYPE = "float64"  # the small factors are cheap in float64; results are cast back


@dataclass
class Factored:
    """A rank-r factorisation ΔW ≈ up @ down (2-D), with the singular values of the target."""

    up: Any  # torch.Tensor [out, r]
    down: Any  # torch.Tensor [r, in]
    singular_values: Any  # torch.Tensor, all singular values of the target (descending)
    rank: int
    target_norm: float
    error_norm: float

    @property
    def rel_error(self) -> float:
        """‖ΔW_r − ΔW‖ / ‖ΔW‖ (0 for a zero target)."""
        return self.error_norm / self.target_norm if self.target_norm > 0 else 0.0


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run small LAPACK calls on one thread: on busy CPUs, thread hand-offs cost 100x the maths."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def single_threaded(func: F) -> F:
    """Decorator form of `one_thread` for the factored (small-matrix) routines."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with one_thread():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def to_2d(t: Any) -> Any:
    """Flatten a conv weight [o, i, kh, kw] to [o, i·kh·kw]; 2-D tensors pass through."""
    return t.reshape(t.shape[0], -1) if t.dim() > 2 else t


def stack_factors(terms: list[tuple[float, Any, Any]]) -> tuple[Any, Any]:
    """[(c, up [out, r], down [r, in])] -> (B = [up₁ … upₙ], A = [c₁·down₁; …]) in float64."""
    import torch

    dt = getattr(torch, COMPUTE_DTYPE)
    ups = [up.to(dt) for _, up, _ in terms]
    downs = [down.to(dt) * float(c) for c, _, down in terms]
    return torch.cat(ups, dim=1), torch.cat(downs, dim=0)


def tail_norm(s: Any, rank: int) -> float:
    """sqrt(Σ_{i≥rank} sᵢ²): the Frobenius error of keeping the first `rank` singular values."""
    return float(s[rank:].double().pow(2).sum().sqrt()) if rank < s.numel() else 0.0


def rank_for_energy(s: Any, energy: float) -> int:
    """The smallest r whose first r singular values keep `energy` of ‖ΔW‖² (at least 1)."""
    sq = s.double().pow(2)
    total = float(sq.sum())
    if total <= 0:
        return 1
    kept = sq.cumsum(0) / total
    r = int((kept < energy - 1e-12).sum()) + 1
    return max(1, min(r, s.numel()))


def choose_rank(s: Any, rank: int | None, energy: float | None, default: int) -> int:
    """Rank to keep: `rank`, or from `energy`, or `default`; never above the number of values."""
    if energy is not None:
        r = rank_for_energy(s, energy)
        return min(r, rank) if rank is not None else r
    return max(1, min(rank if rank is not None else default, max(1, s.numel())))


@single_threaded
def factored_svd(
    up: Any, down: Any, rank: int | None = None, energy: float | None = None
) -> Factored:
    """Truncated SVD of up @ down (up [out, R], down [R, in]) via QR of the factors; exact error."""
    import torch

    dt = getattr(torch, COMPUTE_DTYPE)
    up, down = up.to(dt), down.to(dt)
    q_b, r_b = torch.linalg.qr(up, mode="reduced")
    q_a, r_a = torch.linalg.qr(down.T, mode="reduced")
    u, s, vh = torch.linalg.svd(r_b @ r_a.T, full_matrices=False)
    keep = choose_rank(s, rank, energy, default=up.shape[1])
    return _split(q_b @ u[:, :keep], s, vh[:keep].T, q_a, keep)


def dense_svd(delta: Any, rank: int | None = None, energy: float | None = None) -> Factored:
    """Truncated SVD of a dense 2-D ΔW; the error is measured on the residual, not assumed."""
    import torch

    work = delta.to(torch.float32)
    u, s, vh = torch.linalg.svd(work, full_matrices=False)
    keep = choose_rank(s, rank, energy, default=min(work.shape))
    root = s[:keep].sqrt()
    up, down = u[:, :keep] * root, root[:, None] * vh[:keep]
    target = float(work.double().norm())
    error = float((up @ down - work).double().norm())
    return Factored(up, down, s, keep, target, error)


def _split(left: Any, s: Any, v_keep: Any, q_a: Any, keep: int) -> Factored:
    """Balance √s between the factors: up = left·√s, down = √s·(Q_A·V)ᵀ."""
    root = s[:keep].clamp_min(0).sqrt()
    up = left * root
    down = root[:, None] * (q_a @ v_keep).T
    target = float(s.double().pow(2).sum().sqrt())
    return Factored(up, down, s, keep, target, tail_norm(s, keep))


def combine_error(pairs: list[tuple[float, float]]) -> float:
    """Overall relative error from per-module (error_norm, target_norm): √Σe² / √Σt²."""
    err = math.sqrt(sum(e * e for e, _ in pairs))
    tgt = math.sqrt(sum(t * t for _, t in pairs))
    return err / tgt if tgt > 0 else 0.0


@single_threaded
def factored_error(up: Any, down: Any, target_up: Any, target_down: Any) -> float:
    """‖up@down − target_up@target_down‖_F without the full matrices (QR of the stacked factors)."""
    import torch

    dt = getattr(torch, COMPUTE_DTYPE)
    left = torch.cat([up.to(dt), target_up.to(dt)], dim=1)
    right = torch.cat([down.to(dt), -target_down.to(dt)], dim=0)
    _, r_l = torch.linalg.qr(left, mode="reduced")
    _, r_r = torch.linalg.qr(right.T, mode="reduced")
    return float((r_l @ r_r.T).norm())


@single_threaded
def factored_norm(up: Any, down: Any) -> float:
    """‖up@down‖_F without the full matrix."""
    import torch

    dt = getattr(torch, COMPUTE_DTYPE)
    _, r_l = torch.linalg.qr(up.to(dt), mode="reduced")
    _, r_r = torch.linalg.qr(down.to(dt).T, mode="reduced")
    return float((r_l @ r_r.T).norm())
