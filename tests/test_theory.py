"""The step-size theorem, checked numerically on random weight graphs."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rapo.theory import (
    DynamicsResult,
    StepSizeWarning,
    check_alpha,
    default_alpha,
    empirical_lipschitz,
    energy,
    gradient,
    laplacian,
    lipschitz_constant,
    run_dynamics,
    step_bound,
)
from rapo.types import RapoError

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Problem:
    """A random weight graph with states, anchors and lambda."""

    def __init__(self, n: int, d: int, density: float, lam: float, seed: int) -> None:
        rng = np.random.default_rng(seed)
        upper = np.triu(rng.uniform(0.0, 1.0, (n, n)) * (rng.uniform(size=(n, n)) < density), 1)
        self.w = upper + upper.T
        self.x = rng.normal(size=(n, d))
        self.e = rng.normal(size=(n, d))
        self.lam = lam
        self.n, self.d = n, d
        self._repr = f"Problem(n={n}, d={d}, density={density!r}, lam={lam!r}, seed={seed})"

    def __repr__(self) -> str:
        return self._repr

    def hessian_eigs(self) -> tuple[np.ndarray, np.ndarray]:
        return np.linalg.eigh(laplacian(self.w) + self.lam * np.eye(self.n))


@st.composite
def problems(draw: st.DrawFn, lam_min: float = 0.0, lam_max: float = 5.0) -> Problem:
    return Problem(
        n=draw(st.integers(2, 12)),
        d=draw(st.integers(1, 6)),
        density=draw(st.floats(0.2, 1.0)),
        lam=draw(st.floats(lam_min, lam_max, allow_subnormal=False)),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def pair_energy(p: Problem, x: np.ndarray) -> float:
    """The definition, term by term over unordered pairs (independent of the Laplacian form)."""
    diff2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    return 0.5 * float(np.triu(p.w * diff2, 1).sum()) + 0.5 * p.lam * float(((x - p.e) ** 2).sum())


# --- energy, gradient, L ---------------------------------------------------------------------


@FAST
@given(problems())
def test_energy_matches_unordered_pair_sum(p: Problem) -> None:
    assert energy(p.x, p.w, p.e, p.lam) == pytest.approx(pair_energy(p, p.x), rel=1e-10, abs=1e-10)


@FAST
@given(problems())
def test_gradient_matches_central_finite_differences(p: Problem) -> None:
    h = 1e-5
    numeric = np.zeros_like(p.x)
    for idx in np.ndindex(p.x.shape):
        step = np.zeros_like(p.x)
        step[idx] = h
        numeric[idx] = (pair_energy(p, p.x + step) - pair_energy(p, p.x - step)) / (2 * h)
    np.testing.assert_allclose(gradient(p.x, p.w, p.e, p.lam), numeric, rtol=1e-6, atol=1e-6)


@FAST
@given(problems())
def test_exact_L_is_the_stretch_along_the_top_eigenvector(p: Problem) -> None:
    L = lipschitz_constant(p.w, p.lam)
    eigvals, eigvecs = p.hessian_eigs()
    assert L == pytest.approx(eigvals[-1], rel=1e-10, abs=1e-12)
    rng = np.random.default_rng(0)
    probe = np.outer(eigvecs[:, -1], rng.normal(size=p.d))  # top eigenvector in every dimension
    grad_at = lambda z: gradient(z, p.w, p.e, p.lam)  # noqa: E731
    top_ratio = np.linalg.norm(grad_at(p.x + probe) - grad_at(p.x)) / np.linalg.norm(probe)
    assert top_ratio == pytest.approx(L, rel=1e-9, abs=1e-12)
    # and no direction stretches more than L
    deltas = rng.normal(size=(32, p.n, p.d))
    ratios = [np.linalg.norm(grad_at(p.x + dz) - grad_at(p.x)) / np.linalg.norm(dz) for dz in deltas]
    assert max(ratios) <= L * (1 + 1e-12) + 1e-12


def test_L_uses_unordered_pairs_on_a_two_node_graph() -> None:
    # Lap([[0, w], [w, 0]]) has eigenvalues 0 and 2w, so L = lambda + 2w (not lambda + 4w).
    assert lipschitz_constant(np.array([[0.0, 1.5], [1.5, 0.0]]), 0.25) == pytest.approx(3.25)


def test_diagonal_of_w_is_ignored() -> None:
    w = np.array([[7.0, 1.0], [1.0, 3.0]])
    assert lipschitz_constant(w, 0.0) == pytest.approx(2.0)
    np.testing.assert_allclose(laplacian(w), [[1.0, -1.0], [-1.0, 1.0]])


@pytest.mark.parametrize(
    "w, fragment",
    [
        (np.ones((2, 3)), "square"),
        (np.array([[0.0, 1.0], [2.0, 0.0]]), "symmetric"),
        (np.array([[0.0, -1.0], [-1.0, 0.0]]), "non-negative"),
        (np.array([[0.0, np.nan], [np.nan, 0.0]]), "finite"),
    ],
)
def test_invalid_weights_raise_rapo_error(w: np.ndarray, fragment: str) -> None:
    with pytest.raises(RapoError, match=fragment):
        lipschitz_constant(w, 1.0)


def test_negative_lambda_and_bad_shapes_raise() -> None:
    w = np.zeros((2, 2))
    with pytest.raises(RapoError, match="lambda"):
        lipschitz_constant(w, -1.0)
    with pytest.raises(RapoError, match="shape"):
        energy(np.zeros((3, 2)), w, np.zeros((3, 2)), 1.0)
    with pytest.raises(RapoError, match="anchors"):
        gradient(np.zeros((2, 2)), w, np.zeros((2, 3)), 1.0)


# --- the bound and the warning ---------------------------------------------------------------


def test_bounds_and_zero_L() -> None:
    assert step_bound(2.0) == pytest.approx(0.25)
    assert default_alpha(2.0) == pytest.approx(0.225)
    assert step_bound(0.0) == math.inf
    assert default_alpha(0.0) == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_alpha(1e6, 0.0)  # grad E is constant: no step size can break anything
    with pytest.raises(RapoError):
        step_bound(-1.0)
    with pytest.raises(RapoError, match="alpha"):
        check_alpha(0.0, 1.0)


@settings(max_examples=200, deadline=None)
@given(st.floats(1e-3, 1e3), st.floats(1e-3, 3.0))
def test_check_alpha_warns_exactly_at_or_past_the_bound(L: float, factor: float) -> None:
    alpha = factor / (2 * L)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_alpha(alpha, L)
    step_warnings = [c for c in caught if issubclass(c.category, StepSizeWarning)]
    assert len(step_warnings) == (1 if alpha >= 1 / (2 * L) else 0)
    if step_warnings:
        text = str(step_warnings[0].message)
        assert f"{alpha:.6g}" in text and f"{1 / (2 * L):.6g}" in text and "1/(2L)" in text


def test_check_alpha_warns_at_the_bound_itself() -> None:
    with pytest.warns(StepSizeWarning, match=r"alpha = 0\.25 .* 1/\(2L\) = 0\.25"):
        check_alpha(0.25, 2.0)
    assert issubclass(StepSizeWarning, UserWarning)


# --- the dynamics ----------------------------------------------------------------------------


@FAST
@given(problems(lam_min=0.0), st.floats(0.05, 0.999))
def test_energy_never_increases_and_residual_contracts(p: Problem, factor: float) -> None:
    L = lipschitz_constant(p.w, p.lam)
    alpha = factor / (2 * L) if L > 0 else factor  # L == 0: E is constant, any step is safe
    with warnings.catch_warnings():
        warnings.simplefilter("error", StepSizeWarning)
        res = run_dynamics(p.x, p.w, p.e, p.lam, alpha=alpha, max_iter=150, tol=1e-12)
    energies = np.array(res.energies)
    assert len(energies) == res.iterations + 1
    assert np.all(np.diff(energies) <= 1e-9 * (1 + np.abs(energies[:-1])))
    # residual(t) = ||(I - alpha H)^t residual(0)|| <= rho^t residual(0), rho = max |1 - alpha mu|
    eigvals, _ = p.hessian_eigs()
    rho = float(np.max(np.abs(1 - alpha * eigvals)))
    assert rho <= 1.0 + 1e-12  # floating-point slack on the null space when lambda = 0
    r = np.array(res.residuals)
    bound = r[0] * rho ** np.arange(len(r))
    assert np.all(r <= bound * (1 + 1e-8) + 1e-12)


@FAST
@given(problems(lam_min=1.0))
def test_default_alpha_converges_to_the_fixed_point(p: Problem) -> None:
    res = run_dynamics(p.x, p.w, p.e, p.lam, max_iter=3000, tol=1e-9)
    L = lipschitz_constant(p.w, p.lam)
    assert res.alpha == pytest.approx(0.9 / (2 * L))
    assert res.converged and res.residuals[-1] < 1e-9
    # The fixed point solves (Lap + lambda I) x = lambda e.
    fixed = np.linalg.solve(laplacian(p.w) + p.lam * np.eye(p.n), p.lam * p.e)
    np.testing.assert_allclose(res.x, fixed, atol=1e-6)


@FAST
@given(problems(lam_min=0.1))
def test_step_beyond_2_over_L_diverges(p: Problem) -> None:
    L = lipschitz_constant(p.w, p.lam)
    with pytest.warns(StepSizeWarning):
        res = run_dynamics(p.x, p.w, p.e, p.lam, alpha=2.5 / L, max_iter=120, tol=1e-9)
    assert not res.converged
    # the top mode grows by |1 - 2.5| = 1.5 per step
    assert res.residuals[-1] > 1e6 * res.residuals[0]
    assert res.energies[-1] > 1e10 * max(res.energies[0], 1e-12)


def test_zero_graph_and_zero_lambda_is_a_fixed_point() -> None:
    x = np.arange(6.0).reshape(3, 2)
    res = run_dynamics(x, np.zeros((3, 3)), x + 1, 0.0)
    assert res.L == 0.0 and res.bound == math.inf
    assert res.converged and res.iterations == 1
    np.testing.assert_array_equal(res.x, x)


def test_result_serialises_to_json() -> None:
    res = run_dynamics(np.eye(2), np.array([[0.0, 1.0], [1.0, 0.0]]), np.eye(2), 1.0, max_iter=5)
    assert isinstance(res, DynamicsResult)
    data = json.loads(res.model_dump_json())
    assert np.allclose(data["x"], res.x) and data["iterations"] == 5


# --- empirical Lipschitz ---------------------------------------------------------------------


@FAST
@given(problems())
def test_empirical_L_of_gradient_map_is_below_and_close_to_exact(p: Problem) -> None:
    L = lipschitz_constant(p.w, p.lam)
    est = empirical_lipschitz(lambda z: gradient(z, p.w, p.e, p.lam), p.x)
    assert est <= L * (1 + 1e-9) + 1e-12
    assert est == pytest.approx(L, rel=1e-6, abs=1e-9)


@FAST
@given(problems(), st.floats(0.05, 2.4))
def test_empirical_L_of_transition_is_max_abs_one_minus_alpha_mu(p: Problem, factor: float) -> None:
    L = lipschitz_constant(p.w, p.lam)
    if L == 0:
        return
    alpha = factor / L
    eigvals, _ = p.hessian_eigs()
    expected = float(np.max(np.abs(1 - alpha * eigvals)))
    est = empirical_lipschitz(lambda z: z - alpha * gradient(z, p.w, p.e, p.lam), p.x)
    assert est == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_empirical_L_of_nonsymmetric_linear_map_is_its_spectral_norm() -> None:
    rng = np.random.default_rng(3)
    u, _ = np.linalg.qr(rng.normal(size=(15, 15)))
    v, _ = np.linalg.qr(rng.normal(size=(15, 15)))
    s = np.linspace(0.1, 4.2, 15)
    a = u @ np.diag(s) @ v.T
    est = empirical_lipschitz(lambda z: (a @ z.ravel()).reshape(z.shape), np.zeros((5, 3)), seed=7)
    assert est == pytest.approx(4.2, rel=1e-9)


def test_empirical_L_random_pairs_alone_underestimate_in_high_dimension() -> None:
    # Why the Krylov refinement exists: one stretched direction out of 200 is rarely hit at random.
    a = np.ones(200)
    a[17] = 10.0
    T = lambda z: a * z  # noqa: E731
    pairs_only = empirical_lipschitz(T, np.zeros(200), n_pairs=64, refine=0)
    assert pairs_only < 5.0
    assert empirical_lipschitz(T, np.zeros(200)) == pytest.approx(10.0, rel=1e-9)


def test_empirical_L_of_nonlinear_map() -> None:
    # 3 tanh(z) has Lipschitz constant 3, attained at 0; small probes near 0 see almost all of it.
    est = empirical_lipschitz(lambda z: 3.0 * np.tanh(z), np.zeros((4, 2)), scale=1e-3)
    assert 2.999 < est <= 3.0


def test_empirical_L_rejects_shape_changes_and_non_finite_output() -> None:
    with pytest.raises(RapoError, match="shape"):
        empirical_lipschitz(lambda z: z.ravel()[:1], np.zeros((2, 2)))
    with pytest.raises(RapoError, match="NaN or infinity"):
        empirical_lipschitz(lambda z: np.full(z.shape, np.inf), np.zeros((2, 2)))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 7), d=st.integers(1, 5), seed=st.integers(0, 10_000), lam=st.floats(0.05, 3.0),
       frac=st.floats(0.05, 0.99))
def test_closed_form_run_equals_the_step_by_step_loop(n, d, seed, lam, frac):
    import warnings as _w

    from rapo.theory import lipschitz_constant, run_dynamics

    rng = np.random.default_rng(seed)
    w = rng.random((n, n))
    w = (w + w.T) / 2
    np.fill_diagonal(w, 0)
    x0, e = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    alpha = frac / (2 * lipschitz_constant(w, lam))
    with _w.catch_warnings():
        _w.simplefilter("ignore")
        fast = run_dynamics(x0, w, e, lam, alpha=alpha, max_iter=60, tol=1e-9)
        slow = run_dynamics(x0, w, e, lam, alpha=alpha, max_iter=60, tol=1e-9, iterate=True)
    assert fast.iterations == slow.iterations and fast.converged == slow.converged
    np.testing.assert_allclose(fast.residuals, slow.residuals, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(fast.energies, slow.energies, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(fast.x, slow.x, rtol=1e-6, atol=1e-9)
