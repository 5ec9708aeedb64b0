"""Spectral entropy of a feature matrix: the Durian paper's perceptual complexity H(I).

Paper: "Durian", arXiv 2602.21743. For an image with P patch features F ∈ R^{P×d}:

    F_c = F − mean over rows,   λ = σ(F_c)² / (P − 1)   (eigenvalues of the sample covariance),
    p = λ / Σλ,                  H = −Σ_{p>0} p log p   (natural log).

H is 0 for rank-1 (or flat) data and at most log(min(P − 1, d)); it is invariant to scaling F and to
adding a constant to any column. Pure math: torch only, no I/O.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch

__all__ = ["FLAT_RTOL", "covariance_eigenvalues", "entropy_from_eigenvalues", "spectral_entropies",
           "spectral_entropy"]

# Centred energy below this fraction of the raw energy (as a ratio of Frobenius norms) counts as flat.
# Mean subtraction is not exact in floating point, and an encoder's rows for a flat image differ by float
# noise (~1e-7 relative in float32); since H is scale invariant, that noise alone would otherwise score
# like a richly textured image. 1e-4 sits far above float32 noise and far below any visible texture.
FLAT_RTOL = 1e-4


def covariance_eigenvalues(features: torch.Tensor, rtol: float = FLAT_RTOL) -> torch.Tensor:
    """Eigenvalues λ of the sample covariance of each ``[..., P, d]`` matrix, ``[..., min(P, d)]``, float64.

    Uses the smaller of the two Gram matrices (F_c F_cᵀ or F_cᵀ F_c share their non-zero eigenvalues), so
    the cost is min(P, d)³ rather than a full SVD. Eigenvalues at round-off level (tiny negatives included) become 0;
    matrices that are flat within ``rtol`` (see FLAT_RTOL), or have P < 2, get all-zero eigenvalues; matrices
    holding NaN/inf get NaN eigenvalues (an encoder overflow must not pass for a real value).
    """
    x = features.to(torch.float64)
    rows, cols = x.shape[-2], x.shape[-1]
    if rows < 2:
        return x.new_zeros((*x.shape[:-2], min(rows, cols)))
    finite = torch.isfinite(x).flatten(-2).all(dim=-1)
    x = torch.where(finite[..., None, None], x, 0.0)  # eigvalsh raises on NaN; mark those matrices below
    centred = x - x.mean(dim=-2, keepdim=True)
    gram = centred @ centred.mT if rows <= cols else centred.mT @ centred
    eigenvalues = torch.linalg.eigvalsh(gram) / (rows - 1)
    # Forming the Gram matrix and eigvalsh are accurate to ~max(P, d)·eps·λ_max in absolute terms: below that
    # an eigenvalue is round-off (and may be negative), so zero it, as matrix_rank does; this keeps
    # rank-deficient data exactly rank-deficient.
    noise = max(rows, cols) * torch.finfo(torch.float64).eps * eigenvalues.amax(dim=-1, keepdim=True)
    eigenvalues = torch.where(eigenvalues > noise, eigenvalues, 0.0)
    centred_norm = torch.linalg.matrix_norm(centred)  # ||F_c||_F, exact where eigvalsh is not
    flat = centred_norm <= rtol * torch.linalg.matrix_norm(x)
    eigenvalues = eigenvalues.masked_fill(flat.unsqueeze(-1), 0.0)
    return eigenvalues.masked_fill(~finite.unsqueeze(-1), float("nan"))


def entropy_from_eigenvalues(eigenvalues: torch.Tensor) -> torch.Tensor:
    """H = −Σ p log p with p = λ / Σλ over the last dimension; 0 where Σλ == 0."""
    total = eigenvalues.sum(dim=-1, keepdim=True)
    p = eigenvalues / total.clamp_min(torch.finfo(eigenvalues.dtype).tiny)
    entropy = -torch.xlogy(p, p).sum(dim=-1)  # xlogy(0, 0) == 0: the "over p > 0" of the definition
    return torch.where(total.squeeze(-1) == 0, 0.0, entropy) + 0.0  # + 0.0 turns -0.0 into 0.0; NaN stays


def spectral_entropy(features: torch.Tensor, rtol: float = FLAT_RTOL) -> float:
    """Spectral entropy of one ``[P, d]`` feature matrix (rows = patches). NaN if it holds NaN/inf."""
    if features.dim() != 2:
        raise ValueError(f"features must be [P, d], got shape {tuple(features.shape)}")
    return float(entropy_from_eigenvalues(covariance_eigenvalues(features, rtol)))


def spectral_entropies(features: Sequence[torch.Tensor], rtol: float = FLAT_RTOL) -> torch.Tensor:
    """Spectral entropy of each ``[P_i, d]`` matrix, float64 on CPU, in input order.

    Matrices of equal shape (the common case: a dataset's images share a size) are stacked and decomposed
    in one batched call on their own device, so a batch of images costs a few kernel launches, not one
    decomposition per image.
    """
    out = torch.empty(len(features), dtype=torch.float64)
    by_shape: dict[tuple, list[int]] = defaultdict(list)
    for i, f in enumerate(features):
        if f.dim() != 2:
            raise ValueError(f"features[{i}] must be [P, d], got shape {tuple(f.shape)}")
        by_shape[(tuple(f.shape), f.device)].append(i)
    for indices in by_shape.values():
        stacked = torch.stack([features[i] for i in indices])
        out[indices] = entropy_from_eigenvalues(covariance_eigenvalues(stacked, rtol)).cpu()
    return out
