"""Float32 error bounds for tests, derived from the arithmetic instead of tuned on one CPU.

A float32 sum of n terms computed in any order (any SIMD width, any blocking: what differs between
CPUs) is within ``n * eps * sum|terms|`` of the exact sum (Higham's bound gamma_n = n*u/(1 - n*u),
u = eps/2, rounded up to n*eps). The tests compare a float32 result either with a float64
reference computed from the same float32 inputs (one bound) or with another float32 computation
of the same quantity (the sum of the two bounds). The bounds are worst cases: real errors are
about sqrt(n) times smaller, so a test using them still catches any mistake of the size of one
term (e.g. a bias of order 1 wrongly included in a CAM).
"""

from __future__ import annotations

import torch

EPS32 = float(torch.finfo(torch.float32).eps)


def sum_bound(terms: int, abs_sum: torch.Tensor | float) -> torch.Tensor | float:
    """Bound on |float32 sum - exact sum| of ``terms`` terms whose absolute values sum to ``abs_sum``."""
    return terms * EPS32 * abs_sum


def linear_bound(x_abs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, pooled_terms: int = 0) -> torch.Tensor:
    """Elementwise bound on |float32 ``pool(F) @ weight.T + bias`` - exact| for a (B, C) result.

    ``x_abs`` (B, K): the pooled absolute features (``F.abs().mean((2, 3))`` for GAP, ``amax`` for
    GMP). ``pooled_terms``: rounding steps of the pooling (h*w additions + 1 division for a mean;
    0 for a max, which is exact). The dot product with the bias has K + 1 terms; the pooling's
    rounding, carried through the weights, is bounded by the same magnitude ``|W| @ x_abs + |b|``.
    Holds for any float32 order of the same formula, e.g. CAM-then-mean against mean-then-linear
    (each against the float64 value).
    """
    k = weight.shape[1]
    mag = x_abs.double() @ weight.double().abs().T
    if bias is not None:
        mag = mag + bias.double().abs()
    return (k + 1 + pooled_terms) * EPS32 * mag
