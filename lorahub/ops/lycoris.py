"""LyCORIS (LoKr, LoHa) modules as plain LoRA factors, by an exact SVD of their structure.

A LoKr ΔW = s·(W₁ ⊗ W₂) (2-D: a conv W₂ [o₂, i₂, k, k] flattens to [o₂, i₂·k·k] and the
Kronecker product flattens the same way). With W₁ = U₁S₁V₁ᵀ and W₂ = U₂S₂V₂ᵀ,
W₁ ⊗ W₂ = (U₁ ⊗ U₂)(S₁ ⊗ S₂)(V₁ ⊗ V₂)ᵀ is an SVD: the singular values of ΔW are the products
s₁ᵢ·s₂ⱼ, so the best rank-r LoRA keeps the r largest products and its error is known exactly.
W₁ is small and W₂ low-rank (w2_a·w2_b) or small, so this never builds the full matrix.

A LoHa ΔW = s·(A₁B₁) ⊙ (A₂B₂) = s·(A₁ ⊙ᶜ A₂)(B₁ ⊙ʳ B₂): the column-wise (face-splitting)
products give exact factors of rank r₁·r₂, truncated by the factored SVD of `lowrank`.
LoHa with Tucker cores (conv `hada_t1/t2`) are rebuilt densely.
"""

from __future__ import annotations

from typing import Any

from lorahub.ops import lowrank as LR


def to_lora_factors(mw: Any, rank: int | None, energy: float | None) -> LR.Factored:
    """The best LoRA factorisation (2-D up, down) of a LoKr/LoHa module at `rank` / `energy`."""
    if mw.kind == "lokr":
        return _lokr(mw, rank, energy)
    if mw.kind == "loha" and mw.hada_t1 is None:
        return _loha(mw, rank, energy)
    return LR.dense_svd(LR.to_2d(mw.delta_weight()), rank=rank, energy=energy)


def _svd(t: Any) -> tuple[Any, Any, Any]:
    """(U, S, V) of a small dense matrix, float64."""
    import torch

    u, s, vh = torch.linalg.svd(t.double(), full_matrices=False)
    return u, s, vh.T


def _factored_svd(up: Any, down: Any) -> tuple[Any, Any, Any]:
    """(U, S, V) of up @ down from the QR of each factor, never forming the product."""
    import torch

    q_b, r_b = torch.linalg.qr(up.double(), mode="reduced")
    q_a, r_a = torch.linalg.qr(down.double().T, mode="reduced")
    u, s, vh = torch.linalg.svd(r_b @ r_a.T, full_matrices=False)
    return q_b @ u, s, q_a @ vh.T


def _lokr_w2(mw: Any) -> tuple[Any, Any, Any]:
    """The SVD of the (2-D) second Kronecker factor."""
    import torch

    if mw.lokr_w2 is not None:
        return _svd(LR.to_2d(mw.lokr_w2))
    if mw.lokr_t2 is None:
        return _factored_svd(mw.lokr_w2_a, LR.to_2d(mw.lokr_w2_b))
    eq = "i j k l, j r, i p -> p r k l"  # Tucker: the same contraction as ModuleWeights
    w2 = torch.einsum(eq, mw.lokr_t2.double(), mw.lokr_w2_b.double(), mw.lokr_w2_a.double())
    return _svd(LR.to_2d(w2))


@LR.single_threaded
def _lokr(mw: Any, rank: int | None, energy: float | None) -> LR.Factored:
    import torch

    w1 = mw.lokr_w1 if mw.lokr_w1 is not None else mw.lokr_w1_a.double() @ mw.lokr_w1_b.double()
    u1, s1, v1 = _svd(w1.double() * mw.scale)  # the scale (and its sign) goes into W1
    u2, s2, v2 = _lokr_w2(mw)
    products = (s1[:, None] * s2[None, :]).reshape(-1)
    order = torch.argsort(products, descending=True)
    s = products[order]
    keep = LR.choose_rank(s, rank, energy, default=s.numel())
    i, j = order[:keep] // s2.numel(), order[:keep] % s2.numel()
    root = s[:keep].sqrt()
    up = _kron_columns(u1[:, i], u2[:, j]) * root
    down = (_kron_columns(v1[:, i], v2[:, j]) * root).T
    return LR.Factored(up, down, s, keep, float(s.pow(2).sum().sqrt()), LR.tail_norm(s, keep))


def _kron_columns(a: Any, b: Any) -> Any:
    """Column k is a[:, k] ⊗ b[:, k]: [m, K] and [n, K] -> [m·n, K]."""
    return (a[:, None, :] * b[None, :, :]).reshape(a.shape[0] * b.shape[0], a.shape[1])


def _loha(mw: Any, rank: int | None, energy: float | None) -> LR.Factored:
    a1, b1 = mw.hada_w1_a.double(), LR.to_2d(mw.hada_w1_b).double()
    a2, b2 = mw.hada_w2_a.double(), LR.to_2d(mw.hada_w2_b).double()
    up = (a1[:, :, None] * a2[:, None, :]).reshape(a1.shape[0], -1) * mw.scale
    down = (b1[:, None, :] * b2[None, :, :]).reshape(-1, b1.shape[1])
    cap = min(rank, up.shape[1]) if rank is not None else None
    return LR.factored_svd(up, down, rank=cap, energy=energy)
