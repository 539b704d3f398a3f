"""The step-size bound of the consensus dynamics, checked on every run instead of only on paper.

Agents' answer vectors ``x`` (n x d) move by gradient steps on a disagreement energy

    E(x) = 1/2 * sum_{i<j} w_ij ||x_i - x_j||^2 + lambda/2 * sum_i ||x_i - e_i||^2

with symmetric non-negative weights ``w`` (the diagonal is ignored: ``||x_i - x_i|| = 0``), anchors
``e`` (each agent's own evidence) and ``lambda >= 0``. The pair sum runs over *unordered* pairs.

Derivation of the gradient and of its exact Lipschitz constant. For agent k,

    d/dx_k 1/2 sum_{i<j} w_ij ||x_i - x_j||^2 = sum_{j != k} w_kj (x_k - x_j)

(each unordered pair containing k appears once, and the 1/2 cancels the 2 of the square), which is
row k of ``(D - W) x = Lap(w) x`` with ``D = diag(sum_j w_ij)``. Hence

    grad E(x) = Lap(w) x + lambda (x - e) = H x - lambda e,   H = (Lap(w) + lambda I) (x) I_d.

The Hessian ``H`` is constant, symmetric and positive semi-definite (``x^T Lap x = sum_{i<j} w_ij
||x_i - x_j||^2 >= 0``), so ``||grad E(x) - grad E(y)|| = ||H (x - y)|| <= lambda_max(H) ||x - y||``
with equality when ``x - y`` lies along a top eigenvector: the Lipschitz constant is exactly

    L = lambda + lambda_max(Lap(w)).

(Summing over ordered pairs, as a careless reading of the design note does, doubles the Laplacian term.)

Why ``alpha < 1/(2L)`` is enough. ``T(x) = x - alpha grad E(x)`` is affine with Jacobian ``I - alpha H``,
whose eigenvalues ``1 - alpha mu`` (``mu`` in ``[lambda_min(H), L]``) lie in ``[1/2, 1]`` when
``alpha <= 1/(2L)``: T is non-expansive and every mode decays monotonically (no oscillation). With
``g = grad E(x)``, ``E(T(x)) = E(x) - alpha ||g||^2 + alpha^2/2 g^T H g
<= E(x) - alpha (1 - alpha L / 2) ||g||^2 <= E(x) - (3 alpha / 4) ||g||^2``: the energy never increases. The residual
``||x(t+1) - x(t)|| = ||(I - alpha H)^t alpha g(0)||`` falls at least as fast as
``max|1 - alpha mu|^t``. Plain gradient descent would still converge up to ``alpha < 2/L``; beyond that
the top mode grows as ``|1 - alpha L|^t`` and the run diverges, which the diagnostics show.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable

import numpy as np
from pydantic import BaseModel, ConfigDict, field_serializer

from rapo.types import RapoError

__all__ = [
    "DynamicsResult",
    "StepSizeWarning",
    "check_alpha",
    "default_alpha",
    "empirical_lipschitz",
    "energy",
    "gradient",
    "laplacian",
    "lipschitz_constant",
    "run_dynamics",
    "step_bound",
]

_SAFETY = 0.9  # default alpha sits 10% inside the bound, so float error never crosses it


class StepSizeWarning(UserWarning):
    """A step size at or past the convergence bound 1/(2L): the guarantee no longer holds."""


class DynamicsResult(BaseModel):
    """Diagnostics of one run: the residual and energy traces are the theorem, checked."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    x: np.ndarray
    alpha: float
    L: float
    bound: float
    residuals: list[float]
    energies: list[float]  # E(x(0)), E(x(1)), ...: one more entry than residuals
    iterations: int
    converged: bool

    @field_serializer("x")
    def _x_as_list(self, x: np.ndarray) -> list[list[float]]:
        return x.tolist()


def _weights(w: np.ndarray) -> np.ndarray:
    """Validate a weight matrix once, at the boundary, so the numeric code can trust it."""
    arr = np.asarray(w, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise RapoError(f"weights must be a square n x n matrix, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise RapoError("weights contain NaN or infinity: every w_ij must be a finite number")
    if np.any(arr < 0):
        raise RapoError("weights must be non-negative: clip negative similarities to 0 first")
    if not np.allclose(arr, arr.T, rtol=1e-9, atol=1e-12):
        raise RapoError("weights must be symmetric (w_ij == w_ji): use (w + w.T) / 2")
    arr = 0.5 * (arr + arr.T)
    np.fill_diagonal(arr, 0.0)
    return arr


def _lam(lam: float) -> float:
    value = float(lam)
    if not math.isfinite(value) or value < 0:
        raise RapoError(f"lambda must be a finite number >= 0, got {lam!r}")
    return value


def _states(x: np.ndarray, e: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    xa = np.asarray(x, dtype=np.float64)
    ea = np.asarray(e, dtype=np.float64)
    if xa.ndim != 2 or xa.shape[0] != n:
        raise RapoError(f"x must have shape (n, d) with n = {n} agents, got {xa.shape}")
    if ea.shape != xa.shape:
        raise RapoError(f"anchors e must have the same shape as x {xa.shape}, got {ea.shape}")
    if not (np.all(np.isfinite(xa)) and np.all(np.isfinite(ea))):
        raise RapoError("x and e must be finite: an embedding contains NaN or infinity")
    return xa, ea


def laplacian(w: np.ndarray) -> np.ndarray:
    """Graph Laplacian D - W; its quadratic form is the pairwise disagreement."""
    arr = _weights(w)
    return np.diag(arr.sum(axis=1)) - arr


def _energy(lap: np.ndarray, x: np.ndarray, e: np.ndarray, lam: float) -> float:
    return float(0.5 * np.sum(x * (lap @ x)) + 0.5 * lam * np.sum((x - e) ** 2))


def _gradient(lap: np.ndarray, x: np.ndarray, e: np.ndarray, lam: float) -> np.ndarray:
    return lap @ x + lam * (x - e)


def energy(x: np.ndarray, w: np.ndarray, e: np.ndarray, lam: float) -> float:
    """E(x), computed as 1/2 tr(x^T Lap x) + lambda/2 ||x - e||^2 (equal to the pair sum)."""
    lap = laplacian(w)
    xa, ea = _states(x, e, lap.shape[0])
    return _energy(lap, xa, ea, _lam(lam))


def gradient(x: np.ndarray, w: np.ndarray, e: np.ndarray, lam: float) -> np.ndarray:
    """grad E(x) = Lap(w) x + lambda (x - e)."""
    lap = laplacian(w)
    xa, ea = _states(x, e, lap.shape[0])
    return _gradient(lap, xa, ea, _lam(lam))


def _lipschitz_of_laplacian(lap: np.ndarray, lam: float) -> float:
    top = float(np.linalg.eigvalsh(lap)[-1]) if lap.size else 0.0
    return lam + max(top, 0.0)  # eigvalsh can return -1e-17 for an empty graph


def lipschitz_constant(w: np.ndarray, lam: float) -> float:
    """Exact L = lambda + lambda_max(Lap(w)) of grad E (see the module docstring)."""
    return _lipschitz_of_laplacian(laplacian(w), _lam(lam))


def _check_L(L: float) -> float:
    value = float(L)
    if math.isnan(value) or value < 0:
        raise RapoError(f"a Lipschitz constant is a number >= 0, got {L!r}")
    return value


def step_bound(L: float) -> float:
    """The theorem's bound 1/(2L); infinite when L == 0 (grad E is constant, any step is safe)."""
    value = _check_L(L)
    return math.inf if value == 0 else 1.0 / (2.0 * value)


def default_alpha(L: float) -> float:
    """0.9/(2L): inside the bound with margin; 1.0 when L == 0, where the step size is irrelevant."""
    value = _check_L(L)
    return 1.0 if value == 0 else _SAFETY / (2.0 * value)


def check_alpha(alpha: float, L: float) -> None:
    """Warn (StepSizeWarning) when alpha >= 1/(2L), so a user-set step never voids the theorem silently."""
    a = float(alpha)
    if not math.isfinite(a) or a <= 0:
        raise RapoError(f"step size alpha must be a finite number > 0, got {alpha!r}")
    bound = step_bound(L)
    if a >= bound:
        warnings.warn(
            f"step size alpha = {a:.6g} is not below the convergence bound 1/(2L) = {bound:.6g} "
            f"(L = {float(L):.6g}): the energy may rise and the dynamics may oscillate or diverge "
            f"(they diverge for alpha > 2/L = {2.0 / float(L):.6g}); "
            f"leave alpha unset to use 0.9/(2L) = {default_alpha(L):.6g}",
            StepSizeWarning,
            stacklevel=2,
        )


def run_dynamics(
    x0: np.ndarray,
    w: np.ndarray,
    e: np.ndarray,
    lam: float,
    alpha: float | None = None,
    max_iter: int = 200,
    tol: float = 1e-6,
    iterate: bool = False,
) -> DynamicsResult:
    """Iterate x <- x - alpha grad E(x) until the residual ||x(t+1) - x(t)|| < tol.

    Stops early, unconverged, if the state stops being finite (a diverging user-set alpha).
    With lambda > 0 the same iterates are computed in closed form (see `_spectral_run`) unless
    `iterate=True` asks for the step-by-step loop; both give the same residuals and energies.
    """
    lap = laplacian(w)
    x, ea = _states(x0, e, lap.shape[0])
    return _run_checked(lap, x, ea, _lam(lam), alpha, max_iter, tol, iterate)


def _run_checked(
    lap: np.ndarray, x: np.ndarray, ea: np.ndarray, lam_v: float, alpha: float | None, max_iter: int, tol: float,
    iterate: bool = False, _checked_alpha: bool = False,
) -> DynamicsResult:
    """run_dynamics on inputs already validated (internal callers that built them: consensus)."""
    if max_iter < 0:
        raise RapoError(f"max_iter must be >= 0, got {max_iter}")
    if not tol > 0:
        raise RapoError(f"tol must be > 0, got {tol!r}")
    L = _lipschitz_of_laplacian(lap, lam_v)
    if alpha is None:
        step = default_alpha(L)
    else:
        if not _checked_alpha:  # (the closed form's fallback re-enters with a step already checked)
            check_alpha(alpha, L)
        step = float(alpha)
    if lam_v > 0 and not iterate:
        return _spectral_run(lap, x, ea, lam_v, step, L, max_iter, tol)
    x = x.copy()
    residuals: list[float] = []
    energies: list[float] = [_energy(lap, x, ea, lam_v)]
    converged = False
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(max_iter):
            delta = step * _gradient(lap, x, ea, lam_v)
            x = x - delta
            residual = float(np.linalg.norm(delta))
            residuals.append(residual)
            energies.append(_energy(lap, x, ea, lam_v))
            if not math.isfinite(residual) or not np.all(np.isfinite(x)):
                break
            if residual < tol:
                converged = True
                break
    return DynamicsResult(
        x=x,
        alpha=step,
        L=L,
        bound=step_bound(L),
        residuals=residuals,
        energies=energies,
        iterations=len(residuals),
        converged=converged,
    )


def _spectral_run(
    lap: np.ndarray, x0: np.ndarray, e: np.ndarray, lam: float, step: float, L: float, max_iter: int, tol: float
) -> DynamicsResult:
    """The gradient iteration on the quadratic E, all steps at once.

    With H = Lap + lambda I = V diag(mu) V^T and x* = lambda H^-1 e, the iterates are
    x(t) - x* = V diag((1 - alpha mu)^t) V^T (x0 - x*), so the residual ||x(t+1) - x(t)|| and the
    energy E(x(t)) = E(x*) + 1/2 sum_k mu_k (1 - alpha mu_k)^(2t) ||z_k||^2 (z = V^T (x0 - x*)) are
    vectorised over t: the per-iteration Python overhead of the loop disappears, the numbers do not.
    """
    mu, V = np.linalg.eigh(lap + lam * np.eye(lap.shape[0]))
    if mu[0] <= 1e-9 * max(1.0, float(mu[-1])):  # (near-)singular: the closed form is ill-conditioned
        return _run_checked(lap, x0, e, lam, step, max_iter, tol, iterate=True, _checked_alpha=True)
    x_star = V @ ((V.T @ (lam * e)) / mu[:, None])
    z = V.T @ (x0 - x_star)
    zz = np.sum(z * z, axis=1)  # ||z_k||^2
    factor = 1.0 - step * mu
    t = np.arange(max_iter + 1)[:, None]
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        powers = factor[None, :] ** (2 * t)  # (T+1, n)
        res = np.sqrt(np.maximum(powers[:-1] @ ((step * mu) ** 2 * zz), 0.0))
        e_star = _energy(lap, x_star, e, lam)
        energies = e_star + 0.5 * (powers @ (mu * zz))
    finite = np.isfinite(res) & np.isfinite(energies[1:])
    below = np.flatnonzero(res < tol)
    stop = int(below[0]) + 1 if below.size else max_iter
    bad = np.flatnonzero(~finite[:stop])
    converged = below.size > 0 and not bad.size
    if bad.size:
        stop = int(bad[0]) + 1
    x_final = x_star + V @ (factor[:, None] ** stop * z)
    return DynamicsResult(
        x=x_final,
        alpha=step,
        L=L,
        bound=step_bound(L),
        residuals=[float(r) for r in res[:stop]],
        energies=[float(v) for v in energies[: stop + 1]],
        iterations=stop,
        converged=bool(converged),
    )


def empirical_lipschitz(
    T: Callable[[np.ndarray], np.ndarray],
    x0: np.ndarray,
    n_pairs: int = 64,
    scale: float = 1.0,
    seed: int = 0,
    refine: int = 64,
) -> float:
    """Estimate the Lipschitz constant of any transition T near x0, for maps that are not our quadratic.

    Every number that enters the estimate is a measured ratio ||T(x) - T(y)|| / ||x - y||, so the
    result is a lower bound of the true constant on the probed region. It is the max over
    ``n_pairs`` random pairs within ``scale`` of x0 and over ``refine`` Arnoldi (Krylov) probes
    around x0: random directions alone see only an average stretch in high dimension, while the
    Krylov subspace of the finite-difference Jacobian finds the most stretched direction (exactly,
    for a linear T, once ``refine`` reaches the dimension); that direction is then measured too.
    """
    base = np.asarray(x0, dtype=np.float64)
    if base.size == 0 or not np.all(np.isfinite(base)):
        raise RapoError("x0 must be a non-empty, finite array")
    if not (math.isfinite(scale) and scale > 0):
        raise RapoError(f"scale must be a finite number > 0, got {scale!r}")
    if n_pairs < 0 or refine < 0 or n_pairs + refine == 0:
        raise RapoError("need n_pairs >= 0 and refine >= 0, at least one of them positive")
    shape = base.shape
    dim = base.size

    def apply(z: np.ndarray) -> np.ndarray:
        out = np.asarray(T(z.reshape(shape)), dtype=np.float64)
        if out.shape != shape:
            raise RapoError(f"T must return an array of the input's shape {shape}, got {out.shape}")
        if not np.all(np.isfinite(out)):
            raise RapoError("T returned NaN or infinity: probe a smaller scale or check T near x0")
        return out.ravel()

    flat = base.ravel()
    rng = np.random.default_rng(seed)
    best = 0.0

    if n_pairs:
        # Random pairs, each point within about `scale` of x0.
        offsets = rng.standard_normal((n_pairs, 2, dim)) * (scale / math.sqrt(dim))
        for a, b in offsets:
            gap = float(np.linalg.norm(a - b))
            if gap > 0:
                ratio = float(np.linalg.norm(apply(flat + a) - apply(flat + b))) / gap
                best = max(best, ratio)

    steps = min(refine, dim)
    if steps:
        f0 = apply(flat)
        basis = np.zeros((steps, dim))
        images = np.zeros((steps, dim))  # images[k] ~ J basis[k], from a finite difference
        v = rng.standard_normal(dim)
        v /= np.linalg.norm(v)
        k = 0
        while k < steps:
            jv = (apply(flat + scale * v) - f0) / scale
            basis[k], images[k] = v, jv
            best = max(best, float(np.linalg.norm(jv)))
            k += 1
            nxt = jv if np.linalg.norm(jv) > 0 else rng.standard_normal(dim)
            for _ in range(2):  # re-orthogonalise twice: classical Gram-Schmidt loses it otherwise
                nxt = nxt - basis[:k].T @ (basis[:k] @ nxt)
            norm = float(np.linalg.norm(nxt))
            if norm < 1e-10 * max(1.0, float(np.linalg.norm(jv))):
                nxt = rng.standard_normal(dim)  # invariant subspace reached: restart elsewhere
                for _ in range(2):
                    nxt = nxt - basis[:k].T @ (basis[:k] @ nxt)
                norm = float(np.linalg.norm(nxt))
                if norm == 0:
                    break
            v = nxt / norm
        # Largest stretch of J restricted to span(basis): top right singular vector of images^T.
        _, _, vt = np.linalg.svd(images[:k].T, full_matrices=False)
        direction = basis[:k].T @ vt[0]
        direction /= np.linalg.norm(direction)
        ratio = float(np.linalg.norm(apply(flat + scale * direction) - f0)) / scale
        best = max(best, ratio)
    return best
