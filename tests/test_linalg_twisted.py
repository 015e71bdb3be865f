"""The Lanczos convergence test's top eigenvectors of its tridiagonals (`linalg._top_eigenvectors`, a twisted
factorisation) against np.linalg.eigh, on Lanczos tridiagonals of random products and on matrices built to defeat it
(split, zero, a start orthogonal to the top vector), where it must say it is not reliable rather than be wrong."""

import numpy as np
import pytest

from pipeline.engine.linalg import _top_eigenvectors, _tridiagonal


def lanczos_tridiagonal(A: np.ndarray, v: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(alpha, beta) of `steps` Lanczos steps on A^T A from v, fully reorthogonalised."""
    M, Q = A.T @ A, [v / np.linalg.norm(v)]
    alpha, beta = [], []
    for i in range(steps):
        w = M @ Q[-1]
        alpha.append(Q[-1] @ w)
        for q in Q:
            w -= (q @ w) * q
        if i < steps - 1:
            beta.append(np.linalg.norm(w))
            Q.append(w / beta[-1])
    return np.array(alpha), np.array(beta)


def reference(alpha, beta):
    theta, s = np.linalg.eigh(_tridiagonal(alpha, beta))
    return theta[:, -1], s[:, :, -1]


@pytest.mark.parametrize("seed", range(8))
def test_reliable_vectors_match_eigh(seed):
    rng = np.random.default_rng(seed)
    n, j, rows = 24, int(rng.integers(2, 16)), 12
    runs = []
    for _ in range(rows):
        A = rng.standard_normal((n, n)) * rng.uniform(0.1, 10)
        top = np.linalg.svd(A)[2][0]
        start = top + rng.uniform(0.05, 2.0) * rng.standard_normal(n) / np.sqrt(n)  # a warm start, as the route's
        runs.append(lanczos_tridiagonal(A, start, j))
    alpha, beta = np.array([a for a, _ in runs]), np.array([b for _, b in runs])
    theta, want = reference(alpha, beta)
    s, reliable = _top_eigenvectors(alpha, beta, theta)
    assert reliable.sum() >= rows // 2  # warm starts: most rows are certified
    got, ref = s[reliable], want[reliable]
    ref = ref * np.sign(np.sum(ref * got, axis=1))[:, None]  # eigh's sign is arbitrary
    np.testing.assert_allclose(got, ref, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-12)
    assert np.isnan(s[~reliable]).all()


def test_it_refuses_rows_it_cannot_trust():
    j = 4
    split = (np.array([1.0, 3.0, 2.0, 0.5]), np.array([0.0, 0.2, 0.1]))  # decoupled first entry: s_1 of the top is 0
    zero = (np.zeros(j), np.zeros(j - 1))
    alpha, beta = np.array([split[0], zero[0]]), np.array([split[1], zero[1]])
    theta = np.linalg.eigvalsh(_tridiagonal(alpha, beta))[:, -1]
    s, reliable = _top_eigenvectors(alpha, beta, theta)
    assert not reliable.any() and np.isnan(s).all()
