# Each class of bad input gets the Python exception the package documents,
# with the library's message naming the problem.
import os
import signal
import threading
import time

import numpy as np
import pytest

import sgdstab
from conftest import jacobian


@pytest.fixture(scope="module")
def g():
    return sgdstab.Geometry.from_jacobian(jacobian(6, 2, 15, seed=1), 2)


def test_shapes_and_values_are_value_errors():
    j = jacobian(5, 1, 8, seed=2)
    with pytest.raises(ValueError, match="not divisible by outputs C = 2"):
        sgdstab.Geometry.from_jacobian(j, 2)
    with pytest.raises(ValueError, match="2-D"):
        sgdstab.Geometry.from_jacobian(j[0], 1)
    bad = j.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"entry \(1, 2\) is not finite"):
        sgdstab.Geometry.from_jacobian(bad, 1)
    bad[1, 2] = np.inf
    with pytest.raises(ValueError, match="not finite"):
        sgdstab.Geometry.from_gram(bad @ bad.T if False else np.full((5, 5), np.inf), 1)
    with pytest.raises(ValueError, match="rank 0"):
        sgdstab.Geometry.from_jacobian(np.zeros((4, 3)), 1)
    k = j @ j.T
    asym = k.copy()
    asym[0, 1] += 1.0
    with pytest.raises(ValueError, match="not symmetric"):
        sgdstab.Geometry.from_gram(asym, 1)
    with pytest.raises(ValueError, match="not positive semidefinite"):
        sgdstab.Geometry.from_gram(-k, 1)
    with pytest.raises(ValueError, match="square"):
        sgdstab.Geometry.from_gram(j, 1)
    with pytest.raises(ValueError, match="space"):
        sgdstab.Geometry.from_jacobian(j, 1, space="nowhere")


def test_dtypes_other_than_float_are_type_errors():
    j = jacobian(3, 1, 4, seed=3)
    for bad in (j.astype(np.int64), j.astype(np.complex128), j > 0, np.array([["a", "b"]])):
        with pytest.raises(TypeError, match="float64 or float32"):
            sgdstab.Geometry.from_jacobian(bad, 1)
    with pytest.raises(TypeError):
        sgdstab.Geometry.from_jacobian(object(), 1)
    with pytest.raises(TypeError):
        sgdstab.alignment(j @ j.T, 1, np.arange(3))  # integer residuals


def test_batch_lr_sampling_and_options(g):
    n = g.samples
    for b in (0, n + 1, -1):
        with pytest.raises(ValueError, match="batch"):
            sgdstab.threshold(g, b)
    for lr in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="lr|learning rate"):
            sgdstab.radius(g, lr, 2)
    with pytest.raises(ValueError, match="without\\|with\\|bernoulli"):
        sgdstab.threshold(g, 2, "sometimes")
    with pytest.raises(TypeError, match="unexpected keyword argument 'tol'.*tolerance"):
        sgdstab.threshold(g, 2, tol=1e-8)
    with pytest.raises(ValueError, match="tolerance"):
        sgdstab.threshold(g, 2, tolerance=-1.0)
    with pytest.raises(ValueError, match="method"):
        sgdstab.threshold(g, 2, method="magic")
    with pytest.raises(ValueError, match="device"):
        sgdstab.threshold(g, 2, device="tpu")
    cpu = sgdstab.threshold(g, 2, device="cpu")
    assert cpu.to_dict()["device"] == "cpu"
    assert sgdstab.threshold(g, 2, device="auto").eta_star == pytest.approx(cpu.eta_star, rel=1e-10)
    # the mixed-precision start forced on at this size: certified in double all the same
    dense = sgdstab.threshold(g, 2, method="dense")
    mixed = sgdstab.threshold(g, 2, method="lanczos", device="cpu", mixed_precision=True,
                              mixed_precision_min_rank=1)
    assert mixed.matvecs_single_precision > 0
    assert mixed.eta_star == pytest.approx(dense.eta_star, rel=1e-9)
    plain = sgdstab.threshold(g, 2, method="lanczos", device="cpu", mixed_precision=False)
    assert plain.matvecs_single_precision == 0
    assert sgdstab.region(g, batches=[1, 2], device="cpu").matvecs_single_precision == 0
    with pytest.raises(ValueError, match="mixed_precision_min_rank"):
        sgdstab.threshold(g, 2, mixed_precision_min_rank=-1)
    with pytest.raises(ValueError, match="repeated|duplicate"):
        sgdstab.region(g, batches=[2, 2])
    with pytest.raises(ValueError, match="mark"):
        sgdstab.region(g, marks=[(0.1, n + 1)])
    with pytest.raises(TypeError):
        sgdstab.threshold(g, 2.5)
    for beta in (1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="beta"):
            sgdstab.threshold(g, 2, momentum=beta)
        with pytest.raises(ValueError, match="beta"):
            sgdstab.radius(g, 0.1, 2, momentum=beta)
    with pytest.raises(ValueError, match="momentum"):
        sgdstab.threshold(g, 2, nesterov=True)
    with pytest.raises(ValueError, match="momentum"):
        sgdstab.radius(g, 0.1, 2, nesterov=True)


def test_solver_keywords_are_the_fields_of_solver_options(g):
    # The members of SolverOptions (include/sgdstab/solver.hpp), written out here.
    expected = {"method": "automatic", "tolerance": 1e-10, "subspace_dimension": 0, "max_iterations": 1000,
                "dense_max_dimension": 600, "dense_fallback_max_dimension": 8000, "want_direction": False,
                "memory_limit_bytes": 0.0, "device": "auto", "mixed_precision": True,
                "mixed_precision_min_rank": 512}
    assert sgdstab.solver_options() == expected
    # Every default given explicitly: the same answer as none given.
    plain = sgdstab.threshold(g, 2)
    explicit = sgdstab.threshold(g, 2, **expected)
    assert explicit.eta_star == plain.eta_star
    for key in expected:
        assert key in sgdstab.threshold.__doc__, key
    with pytest.raises(ValueError, match="max_iterations must be >= 1"):
        sgdstab.threshold(g, 2, max_iterations=0)
    with pytest.raises(ValueError, match="subspace_dimension must be 0 \\(automatic\\) or >= 3"):
        sgdstab.curve(g, [1, 2], subspace_dimension=2)


def test_reduction_keywords_are_the_fields_of_reduction_options():
    # The members of ReductionOptions (include/sgdstab/geometry.hpp), written out here.
    expected = {"rank_tolerance": 0.0, "gram_tolerance": 1e-6, "space": "automatic", "memory_limit_bytes": 0.0}
    assert sgdstab.reduction_options() == expected
    for key in expected:
        assert key in sgdstab.Geometry.__doc__, key
    j = np.random.default_rng(3).standard_normal((6, 4))
    plain = sgdstab.Geometry.from_jacobian(j, 1)
    given = sgdstab.Geometry.from_jacobian(j, 1, **expected)
    assert given.lambda_max == plain.lambda_max and given.rank == plain.rank
    gram = sgdstab.Geometry.from_gram(j @ j.T, 1, rank_tolerance=1e-8, gram_tolerance=1e-9)
    assert gram.rank == plain.rank
    with pytest.raises(TypeError, match="reduction options: rank_tolerance, gram_tolerance, space, memory_limit_bytes"):
        sgdstab.Geometry.from_jacobian(j, 1, rank_tol=1e-8)
    with pytest.raises(ValueError, match="rank_tolerance must be finite and < 1"):
        sgdstab.Geometry.from_gram(j @ j.T, 1, rank_tolerance=1.0)
    with pytest.raises(ValueError, match="automatic"):
        sgdstab.Geometry.from_jacobian(j, 1, space="diagonal")


def test_montecarlo_keywords_are_the_fields_of_its_table(g):
    # CrossCheckOptions' members (include/sgdstab/montecarlo.hpp) beyond the run itself, written out here.
    expected = {"steps": 50, "trajectories": 2000, "blocks": 2000, "seed": 0, "confidence": 0.95,
                "significance": 0.01}
    assert sgdstab.montecarlo_options() == expected
    for key in expected:
        assert key in sgdstab.montecarlo.__doc__, key
    small = dict(steps=3, trajectories=20, blocks=20, seed=4)
    a = sgdstab.montecarlo(g, 0.1, 2, **small)
    b = sgdstab.montecarlo(g, 0.1, 2, **small, confidence=0.95, significance=0.01)
    assert a.rho_hat == b.rho_hat
    with pytest.raises(TypeError, match="Monte Carlo options: steps, trajectories, blocks, seed"):
        sgdstab.montecarlo(g, 0.1, 2, runs=3)
    with pytest.raises(ValueError, match="trajectories must be >= 2, got 1"):
        sgdstab.montecarlo(g, 0.1, 2, trajectories=1)
    with pytest.raises(ValueError, match="significance must lie in \\(0, 1\\)"):
        sgdstab.montecarlo(g, 0.1, 2, **small, significance=1.5)


def test_files_are_os_errors(tmp_path):
    with pytest.raises(OSError, match="nope.npy"):
        sgdstab.read_matrix(tmp_path / "nope.npy")
    np.save(tmp_path / "a.npy", np.ones((40, 40)))
    data = (tmp_path / "a.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(data[:len(data) // 2])
    with pytest.raises(OSError, match="t.npy"):
        sgdstab.read_matrix(tmp_path / "t.npy")
    (tmp_path / "c.csv").write_text("1,2\n3,x\n")
    with pytest.raises(OSError, match="c.csv"):
        sgdstab.read_matrix(tmp_path / "c.csv")
    with pytest.raises(OSError):
        sgdstab.region(sgdstab.Geometry.from_jacobian(jacobian(4, 1, 6, seed=4), 1),
                       plot=tmp_path / "no" / "such" / "dir.svg")


def test_sizes_that_do_not_fit_are_memory_errors(g):
    j = jacobian(40, 1, 60, seed=5)
    with pytest.raises(MemoryError, match="reduction .* needs about .* available"):
        sgdstab.Geometry.from_jacobian(j, 1, memory_limit_bytes=1000)
    with pytest.raises(MemoryError, match="needs about"):
        sgdstab.threshold(g, 2, method="dense", memory_limit_bytes=1000)


def _interrupt_after(seconds):
    timer = threading.Timer(seconds, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    return timer


def test_ctrl_c_interrupts_a_long_call():
    # SIGINT to this process while the main thread is in a long call: a call
    # that polls (Monte Carlo steps, Lanczos applications) stops with
    # KeyboardInterrupt; the next call works normally.
    g = sgdstab.Geometry.from_jacobian(jacobian(60, 1, 90, seed=6), 1)
    eta = sgdstab.threshold(g, 3).eta_star
    t0 = time.monotonic()
    timer = _interrupt_after(0.5)
    try:
        with pytest.raises(KeyboardInterrupt, match="interrupted"):
            sgdstab.montecarlo(g, 0.5 * eta, 3, steps=10**7, trajectories=100, blocks=100)
    finally:
        timer.cancel()
    assert time.monotonic() - t0 < 20
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Python's handler is back
    assert sgdstab.threshold(g, 2).converged


def test_ctrl_c_during_a_call_that_cannot_stop_is_raised_after_it():
    # A dense LAPACK solve does not poll: the Ctrl-C is not lost, Python
    # raises KeyboardInterrupt as soon as the call returns.
    g = sgdstab.Geometry.from_jacobian(jacobian(90, 1, 130, seed=9), 1)
    timer = _interrupt_after(0.3)
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        sgdstab.threshold(g, 3, method="dense", dense_max_dimension=10**6)
        assert time.monotonic() - t0 > 0.3, "the solve ended before the signal: make it larger"
        for _ in range(1000):  # the pending interrupt is raised at the next bytecode boundary
            time.sleep(0.001)
    timer.cancel()
