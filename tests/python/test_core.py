# The Python package against independent references: dense NumPy
# computations and closed forms, and the command line on the same inputs
# (the same JSON, numbers to 1e-12).
import json
import math
import os
import resource
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import sgdstab
from conftest import assert_same, jacobian

SCHEMES = ["without", "with", "bernoulli"]


@pytest.fixture(scope="module")
def problems(tmp_path_factory):
    """(J, C, path of J.npy, path of K.npy) for C = 1, 2, 3."""
    d = tmp_path_factory.mktemp("problems")
    out = {}
    for c, (n, p) in {1: (9, 14), 2: (6, 20), 3: (5, 12)}.items():
        j = jacobian(n, c, p, seed=10 + c)
        np.save(d / f"J{c}.npy", j)
        np.save(d / f"K{c}.npy", j @ j.T)
        out[c] = (j, c, d / f"J{c}.npy", d / f"K{c}.npy")
    return out


def test_geometry_matches_a_dense_hessian(problems):
    for j, c, _, _ in problems.values():
        n = j.shape[0] // c
        h = j.T @ j / n
        w = np.linalg.eigvalsh(h)[::-1]
        for g in (sgdstab.Geometry.from_jacobian(j, c), sgdstab.Geometry.from_gram(j @ j.T, c)):
            r = min(j.shape)
            assert g.rank == r and g.samples == n and g.outputs == c
            assert np.allclose(g.hessian_eigenvalues, w[:r], rtol=1e-12, atol=0)
            assert math.isclose(g.lambda_max, w[0], rel_tol=1e-12)
            assert math.isclose(g.hessian_trace, np.trace(h), rel_tol=1e-12)
            assert math.isclose(g.hessian_frobenius, np.linalg.norm(h), rel_tol=1e-12)
            assert math.isclose(g.eta_gd, 2 / w[0], rel_tol=1e-12)
            z = g.factor
            assert np.allclose(z @ z.T, j @ j.T, rtol=0, atol=1e-12 * np.abs(j @ j.T).max())
            for i in range(n):  # h_i = Z_i^T Z_i in the eigenbasis of H
                zi = z[i * c:(i + 1) * c]
                assert np.allclose(g.per_sample_hessian(i), zi.T @ zi, rtol=0, atol=1e-12 * w[0])
        assert sgdstab.Geometry.from_jacobian(j, c).params == j.shape[1]
        assert sgdstab.Geometry.from_gram(j @ j.T, c).params is None


def test_c_and_fortran_order_and_float32_give_the_same_geometry(problems):
    j, c, _, _ = problems[2]
    ref = sgdstab.Geometry.from_jacobian(np.asfortranarray(j), c)
    for a in (np.ascontiguousarray(j), j[:, ::1].copy(order="C")):
        g = sgdstab.Geometry.from_jacobian(a, c)
        assert np.allclose(g.hessian_eigenvalues, ref.hessian_eigenvalues, rtol=1e-12, atol=0)
    g32 = sgdstab.Geometry.from_jacobian(j.astype(np.float32), c)
    j32 = j.astype(np.float32).astype(np.float64)
    w32 = np.linalg.eigvalsh(j32.T @ j32 / (j.shape[0] // c))[::-1]
    assert np.allclose(g32.hessian_eigenvalues, w32[:g32.rank], rtol=1e-10, atol=0)
    # Parameter space (n c > p) from a C-order array: the same as from F order.
    tall = jacobian(10, 2, 7, seed=3)
    a = sgdstab.Geometry.from_jacobian(np.ascontiguousarray(tall), 2)
    b = sgdstab.Geometry.from_jacobian(np.asfortranarray(tall), 2)
    assert a.space == b.space == "parameter"
    assert np.allclose(a.hessian_eigenvalues, b.hessian_eigenvalues, rtol=1e-12, atol=0)


def test_float64_arrays_are_read_in_place():
    j = jacobian(4, 2, 9, seed=1)
    for a, layout in ((np.ascontiguousarray(j), "row"), (np.asfortranarray(j), "column")):
        addr, seen, copied = sgdstab._core._matrix_view(a)
        assert addr == a.ctypes.data and seen == layout and not copied
    for a in (j.astype(np.float32), j[:, ::2]):  # float32 and strided: converted
        addr, seen, copied = sgdstab._core._matrix_view(a)
        assert copied and addr != a.ctypes.data
    g = sgdstab.Geometry.from_jacobian(j, 2)
    z = g.factor  # a read-only view of the geometry's own memory
    assert not z.flags.writeable and z.base is not None
    assert sgdstab._core._matrix_view(np.asfortranarray(z))[0] == z.ctypes.data


@pytest.mark.parametrize("c", [1, 2, 3])
@pytest.mark.parametrize("sampling", SCHEMES)
def test_threshold_and_radius_equal_the_program(problems, cli, c, sampling):
    j, c, jpath, kpath = problems[c]
    n = j.shape[0] // c
    g = sgdstab.Geometry.from_jacobian(j, c)
    for method in ("dense", "lanczos"):
        for b in (1, 2, n):
            r = sgdstab.threshold(g, b, sampling, method=method)
            assert r.converged
            assert_same(r.to_dict(), cli("threshold", "--jacobian", jpath, "--outputs", c, "--batch", b,
                                         "--sampling", sampling, "--method", method), where="threshold")
            lr = 0.9 * r.eta_star
            rad = sgdstab.radius(g, lr, b, sampling, method=method)
            assert rad.converged and rad.stable and rad.rho < 1
            assert_same(rad.to_dict(), cli("radius", "--jacobian", jpath, "--outputs", c, "--batch", b,
                                           "--sampling", sampling, "--method", method, "--lr", repr(lr)),
                        where="radius")
    # From the Gram, as the program reads it.
    gk = sgdstab.Geometry.from_gram(np.load(kpath), c)
    r = sgdstab.threshold(gk, 2, sampling)
    assert_same(r.to_dict(), cli("threshold", "--gram", kpath, "--outputs", c, "--batch", 2, "--sampling", sampling))


def test_closed_forms(problems):
    # B = n without replacement and Bernoulli: full-batch GD, eta* = 2 / lambda_max;
    # B = 1: with and without replacement coincide.
    for j, c, _, _ in problems.values():
        n = j.shape[0] // c
        g = sgdstab.Geometry.from_jacobian(j, c)
        for s in ("without", "bernoulli"):
            assert math.isclose(sgdstab.threshold(g, n, s).eta_star, 2 / g.lambda_max, rel_tol=1e-10)
        assert math.isclose(sgdstab.threshold(g, 1, "with").eta_star, sgdstab.threshold(g, 1, "without").eta_star,
                            rel_tol=1e-10)
        r = sgdstab.threshold(g, 2, want_direction=True)
        d = r.direction  # the top generalized eigen-direction: PSD, unit norm
        assert d.shape == (g.rank, g.rank)
        assert math.isclose(np.linalg.norm(d), 1.0, rel_tol=1e-9)
        assert np.linalg.eigvalsh(d).min() > -1e-9


REPORT = ["converged", "status", "message", "matvecs", "matvecs_single_precision", "iterations", "method",
          "residual", "error_bound", "seconds"]


def test_every_result_reads_its_report_the_same_way(problems):
    # One result shape (sgdstab::Result): the same report attributes on every
    # result, equal to what the result's to_dict() (the program's JSON) says.
    j, c, _, _ = problems[2]
    g = sgdstab.Geometry.from_jacobian(j, c)
    results = [sgdstab.threshold(g, 2), sgdstab.radius(g, 0.1, 2), sgdstab.threshold(g, 2, momentum=0.5),
               sgdstab.bounds(g, 2), sgdstab.worst_case_alignment(g), sgdstab.region(g).curves[0].points[0]]
    for r in results:
        for name in REPORT:
            assert hasattr(r, name), (type(r).__name__, name)
        assert r.converged and r.status == "converged", (type(r).__name__, r.message)
        assert r.message, type(r).__name__
        assert r.seconds > 0, type(r).__name__
    t = results[0]
    d = t.to_dict()
    assert (t.matvecs, t.method, t.status) == (d["matvecs"], d["method"], d["status"])


def test_curve_region_bounds_equal_the_program(problems, cli, tmp_path):
    j, c, jpath, _ = problems[2]
    n = j.shape[0] // c
    g = sgdstab.Geometry.from_jacobian(j, c)
    cur = sgdstab.curve(g, [1, 2, 3, n], "with")
    assert cur.batches == [1, 2, 3, n] and cur.converged
    assert all(a <= b * (1 + 1e-12) for a, b in zip(cur.eta_star, cur.eta_star[1:]))  # monotone in B
    assert_same(cur.to_dict(), cli("curve", "--jacobian", jpath, "--outputs", c, "--batches", f"1,2,3,{n}",
                                   "--sampling", "with"))
    assert sgdstab.curve(g).batches == sgdstab.default_batches(n) == [1, 2, 4, n]

    plot = tmp_path / "region.svg"
    reg = sgdstab.region(g, marks=[(0.05, 2)], plot=plot)
    assert reg.converged and [cv.sampling for cv in reg.curves] == SCHEMES
    ref = cli("region", "--jacobian", jpath, "--outputs", c, "--mark", "0.05,2", "--plot", tmp_path / "cli.svg")
    ref["plot"] = str(plot)
    assert ref.pop("engine") == "exact" and ref.pop("engine_reason").startswith("rank ")  # the CLI's choice
    assert_same(reg.to_dict(), ref)
    root = ET.parse(plot).getroot()  # the SVG parses and is an SVG
    assert root.tag.endswith("svg")
    for cv in reg.curves:
        for pt in cv.points:
            single = sgdstab.threshold(g, pt.batch, cv.sampling).eta_star
            assert pt.eta_low <= single * (1 + 1e-9) and single <= pt.eta_high * (1 + 1e-9)
            low, high = reg.band(cv.sampling, pt.batch)
            assert low <= single * (1 + 1e-9) and single <= high * (1 + 1e-9)
    one = sgdstab.region(g, "bernoulli", [1, n])
    assert [cv.sampling for cv in one.curves] == ["bernoulli"]

    for s in SCHEMES:
        b = sgdstab.bounds(g, 2, s)
        assert b.converged
        assert b.eta_sufficient <= b.eta_star * (1 + 1e-12) <= b.eta_gd * (1 + 1e-12)
        assert_same(b.to_dict(), cli("bounds", "--jacobian", jpath, "--outputs", c, "--batch", 2, "--sampling", s))


def test_alignment_equals_the_program_and_the_parameter_space_formula(problems, cli, tmp_path):
    j, c, _, kpath = problems[2]
    rng = np.random.default_rng(4)
    res = rng.standard_normal(j.shape[0])
    np.save(tmp_path / "r.npy", res.reshape(-1, 1))  # the program reads 2-D arrays
    mu = sgdstab.alignment(j @ j.T, c, res)
    assert math.isclose(mu, sgdstab.alignment_from_jacobian(j, c, res), rel_tol=1e-10)
    ref = cli("alignment", "--gram", kpath, "--outputs", c, "--residual", tmp_path / "r.npy")
    assert math.isclose(mu, ref["mu"], rel_tol=1e-12)
    worst = sgdstab.worst_case_alignment(sgdstab.Geometry.from_gram(j @ j.T, c))
    assert worst.converged and math.isclose(worst.mu_star, ref["mu_star"], rel_tol=1e-12)
    assert worst.mu_star <= mu * (1 + 1e-12)


def test_montecarlo_equals_the_program(problems, cli):
    j, c, jpath, _ = problems[1]
    g = sgdstab.Geometry.from_jacobian(j, c)
    eta = sgdstab.threshold(g, 3).eta_star
    mc = sgdstab.montecarlo(g, 0.8 * eta, 3, steps=10, trajectories=300, blocks=300, seed=5)
    assert mc.verdict == "agree" and mc.rho < 1
    ref = cli("montecarlo", "--jacobian", jpath, "--lr", repr(0.8 * eta), "--batch", 3, "--steps", 10,
              "--trajectories", 300, "--blocks", 300, "--seed", 5)
    assert_same(mc.to_dict(), ref)


def test_machine_info_is_the_programs_performance_block_and_the_machines(problems):
    m = sgdstab.machine_info()
    # Independent readings of the same machine.
    with open("/proc/cpuinfo") as f:
        models = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    assert m["cpu"].strip() == (models[0] if models else "unknown")
    assert m["logical_cpus"] == os.cpu_count()
    assert 1 <= m["library_threads"] <= min(8, os.cpu_count())
    assert m["openblas_coretype"] == (os.environ.get("OPENBLAS_CORETYPE") or None)
    if m["blas"].startswith("unknown"):
        assert m["blas_core"] == "" and m["blas_threads"] == 0
    else:
        assert m["blas_core"] and m["blas_threads"] >= 1
    # The program's block, read raw (the cli fixture drops it).
    path = os.environ.get("SGDSTAB_CLI")
    if path and os.path.exists(path):
        _, _, jpath, _ = problems[1]
        p = subprocess.run([path, "threshold", "--jacobian", str(jpath), "--batch", "2"], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        block = json.loads(p.stdout)["performance"]
        # blas_threads: this process may have changed OpenBLAS's threads; checked above.
        assert {k: v for k, v in block.items() if k != "blas_threads"} == \
            {k: v for k, v in m.items() if k != "blas_threads"}


def test_available_memory_bytes_sees_an_address_space_limit():
    # Without limits: at most MemAvailable (read here, independently); in a
    # child under RLIMIT_AS (ulimit -v) 1 GiB above its address space and
    # the BLAS reserve: that 1 GiB (less what the child maps meanwhile).
    with open("/proc/meminfo") as f:
        mem = [int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:")][0]
    avail = sgdstab.available_memory_bytes()
    assert isinstance(avail, int) and 0 < avail <= 1.1 * mem
    if resource.getrlimit(resource.RLIMIT_AS)[1] != resource.RLIM_INFINITY:
        pytest.skip("a hard RLIMIT_AS is set: the child could not raise its own")
    if avail < 3 * 2**30:
        pytest.skip("less than 3 GiB available: the test's limit would not be the least reading")
    code = ("import resource, sys, sgdstab\n"
            "vm = [int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmSize:')][0]\n"
            "lim = vm + int(sgdstab._core._blas_reserve_bytes()) + 2**30\n"
            "resource.setrlimit(resource.RLIMIT_AS, (lim, resource.RLIM_INFINITY))\n"
            "a = sgdstab.available_memory_bytes()\n"
            "print(a)\n"
            "sys.exit(0 if a is not None and 0.9 * 2**30 < a <= 2**30 else 1)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert p.returncode == 0, (p.stdout, p.stderr)


def test_exact_region_min_bytes_is_the_limit_at_which_region_runs(problems):
    j, c, _, _ = problems[2]
    g = sgdstab.Geometry.from_jacobian(j, c)
    opts = dict(method="lanczos", mixed_precision=False, device="cpu")
    b = sgdstab.exact_region_min_bytes(g, **opts)
    m = g.rank * (g.rank + 1) // 2
    assert b >= 8 * 14 * m
    with pytest.raises(MemoryError):
        sgdstab.region(g, batches=[1, 2], memory_limit_bytes=0.99 * b, **opts)
    reg = sgdstab.region(g, batches=[1, 2], memory_limit_bytes=b, **opts)
    free = sgdstab.region(g, batches=[1, 2], **opts)
    assert len(reg.curves) == 3
    for c_lim, c_free in zip(reg.curves, free.curves):
        done = [(a, f) for a, f in zip(c_lim.points, c_free.points) if a.converged]
        assert done
        for a, f in done:
            assert a.eta_star == pytest.approx(f.eta_star, rel=1e-8)


def test_read_matrix_reads_what_numpy_wrote(tmp_path):
    a = np.random.default_rng(2).standard_normal((4, 3))
    for name, arr in (("c.npy", np.ascontiguousarray(a)), ("f.npy", np.asfortranarray(a)),
                      ("s.npy", a.astype(np.float32))):
        np.save(tmp_path / name, arr)
        assert np.array_equal(sgdstab.read_matrix(tmp_path / name), arr.astype(np.float64))
    np.savetxt(tmp_path / "a.csv", a, delimiter=",", fmt="%.17g")
    assert np.array_equal(sgdstab.read_matrix(str(tmp_path / "a.csv")), a)


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_threshold_and_radius_equal_the_program(problems, cli, nesterov):
    j, c, jpath, _ = problems[2]
    g = sgdstab.Geometry.from_jacobian(j, c)
    flag = ["--nesterov"] if nesterov else []
    for s in SCHEMES:
        r = sgdstab.threshold(g, 2, s, momentum=0.8, nesterov=nesterov, scan_points=4)
        assert r.converged and r.eta_low <= r.eta_star <= r.eta_high <= r.eta_mean
        assert_same(r.to_dict(), cli("threshold", "--jacobian", jpath, "--outputs", c, "--batch", 2, "--sampling", s,
                                     "--momentum", 0.8, "--scan", 4, *flag))
        rad = sgdstab.radius(g, 0.9 * r.eta_star, 2, s, momentum=0.8, nesterov=nesterov)
        assert rad.converged and rad.rho < 1
        assert_same(rad.to_dict(), cli("radius", "--jacobian", jpath, "--outputs", c, "--batch", 2, "--sampling", s,
                                       "--momentum", 0.8, "--lr", repr(0.9 * r.eta_star), *flag))
    # beta = 0 is plain SGD's threshold (a different code path).
    assert math.isclose(sgdstab.threshold(g, 2, momentum=0.0).eta_star, sgdstab.threshold(g, 2).eta_star,
                        rel_tol=1e-9)


def test_weight_decay_equals_the_program_and_the_gd_closed_form(problems, cli):
    j, c, jpath, _ = problems[2]
    n = j.shape[0] // c
    g = sgdstab.Geometry.from_jacobian(j, c)
    lam = 0.3 * g.lambda_max
    for s in SCHEMES:
        r = sgdstab.threshold(g, 2, s, weight_decay=lam)
        assert r.converged and r.to_dict()["weight_decay"] == lam
        assert_same(r.to_dict(), cli("threshold", "--jacobian", jpath, "--outputs", c, "--batch", 2, "--sampling", s,
                                     "--weight-decay", repr(lam)))
        rad = sgdstab.radius(g, 0.9 * r.eta_star, 2, s, weight_decay=lam)
        assert rad.converged and rad.rho < 1
        assert_same(rad.to_dict(), cli("radius", "--jacobian", jpath, "--outputs", c, "--batch", 2, "--sampling", s,
                                       "--weight-decay", repr(lam), "--lr", repr(0.9 * r.eta_star)))
        cur = sgdstab.curve(g, [1, 2, n], s, weight_decay=lam)
        assert math.isclose(cur.points[1].eta_star, r.eta_star, rel_tol=1e-9)
        assert_same(cur.to_dict(), cli("curve", "--jacobian", jpath, "--outputs", c, "--batches", f"1,2,{n}",
                                       "--sampling", s, "--weight-decay", repr(lam)))
    reg = sgdstab.region(g, ["without", "with"], [1, 2, n], weight_decay=lam)
    assert reg.converged and reg.to_dict()["weight_decay"] == lam
    assert_same(reg.to_dict(), cli("region", "--jacobian", jpath, "--outputs", c, "--sampling", "without,with",
                                   "--batches", f"1,2,{n}", "--weight-decay", repr(lam)),
                skip=("seconds", "apply_seconds", "engine", "engine_reason"))
    with pytest.raises(ValueError, match="Bernoulli"):
        sgdstab.region(g, "bernoulli", weight_decay=lam)
    mc = sgdstab.montecarlo(g, 0.8 * sgdstab.threshold(g, 2, "with", weight_decay=lam).eta_star, 2, "with",
                            weight_decay=lam, steps=5, trajectories=2000, blocks=400)
    assert mc.verdict == "agree" and mc.to_dict()["weight_decay"] == lam
    ref = cli("montecarlo", "--jacobian", jpath, "--outputs", c, "--batch", 2, "--sampling", "with", "--lr",
              repr(mc.to_dict()["lr"]), "--weight-decay", repr(lam), "--steps", 5, "--trajectories", 2000,
              "--blocks", 400, "--quiet")
    assert_same(mc.to_dict(), ref)
    reg_default = sgdstab.region(g, batches=[2, n], weight_decay=lam)
    assert [cv.sampling for cv in reg_default.curves] == ["without", "with"]
    # GD (B = n without replacement): 2 / (lambda_max + lambda).
    assert math.isclose(sgdstab.threshold(g, n, weight_decay=lam).eta_star, 2 / (g.lambda_max + lam), rel_tol=1e-12)
    assert sgdstab.threshold(g, 2).to_dict()["weight_decay"] == 0
    with pytest.raises(ValueError, match="weight decay"):
        sgdstab.threshold(g, 2, weight_decay=-1.0)
    # With momentum (theory/momentum.md, section 8): the program's JSON, and beta = 0 is the plain answer.
    for args in (["--momentum", "0.5"], ["--momentum", "0.5", "--nesterov"]):
        nest = "--nesterov" in args
        got = sgdstab.threshold(g, 2, momentum=0.5, nesterov=nest, weight_decay=lam)
        want = cli("threshold", "--jacobian", jpath, "--outputs", c, "--batch", 2, "--weight-decay", repr(lam), *args)
        assert got.to_dict()["weight_decay"] == want["weight_decay"] == lam
        assert_same(got.to_dict(), want)
        rad = sgdstab.radius(g, 0.5 * got.eta_star, 2, momentum=0.5, nesterov=nest, weight_decay=lam)
        assert rad.converged and rad.rho < 1 and rad.to_dict()["weight_decay"] == lam
    assert math.isclose(sgdstab.threshold(g, 2, momentum=0.0, weight_decay=lam).eta_star,
                        sgdstab.threshold(g, 2, weight_decay=lam).eta_star, rel_tol=1e-8)
    reg = sgdstab.region(g, batches=[2, n], momentum=0.5, weight_decay=lam)
    assert [cv.sampling for cv in reg.curves] == ["without", "with", "bernoulli"]
    assert reg.to_dict()["weight_decay"] == lam


def test_momentum_curve_equals_the_program_and_single_thresholds(problems, cli):
    j, c, jpath, _ = problems[1]
    n = j.shape[0] // c
    g = sgdstab.Geometry.from_jacobian(j, c)
    cur = sgdstab.curve(g, [1, 3, n], "with", momentum=0.6, nesterov=True)
    assert cur.converged and cur.batches == [1, 3, n]
    for pt in cur.points:
        single = sgdstab.threshold(g, pt.batch, "with", momentum=0.6, nesterov=True)
        assert math.isclose(pt.eta_star, single.eta_star, rel_tol=1e-12)
        assert pt.eta_star <= pt.eta_mean * (1 + 1e-12)
    assert all(a <= b * (1 + 1e-9) for a, b in zip(cur.eta_star, cur.eta_star[1:]))  # monotone in B here
    assert_same(cur.to_dict(), cli("curve", "--jacobian", jpath, "--outputs", c, "--batches", f"1,3,{n}",
                                   "--sampling", "with", "--momentum", 0.6, "--nesterov"))


def test_momentum_region_and_montecarlo_equal_the_program(problems, cli):
    j, c, jpath, _ = problems[3]
    n = j.shape[0] // c
    g = sgdstab.Geometry.from_jacobian(j, c)
    reg = sgdstab.region(g, ["with", "bernoulli"], [1, 2, n], marks=[(0.05, 2)], momentum=0.9)
    assert reg.converged
    d = reg.to_dict()
    assert d["momentum"] == 0.9 and d["nesterov"] is False
    assert math.isclose(d["eta_mean"], 2 * 1.9 / g.lambda_max, rel_tol=1e-12)
    for curve in reg.curves:
        for pt in curve.points:  # each point is the momentum threshold of the library
            single = sgdstab.threshold(g, pt.batch, curve.sampling, momentum=0.9)
            assert math.isclose(pt.eta_star, single.eta_star, rel_tol=1e-9)
        low, high = reg.band(curve.sampling, 1.5)  # between B = 1 and 2: eta* is monotone in B
        assert 0 < low <= sgdstab.threshold(g, 1, curve.sampling, momentum=0.9).eta_star * (1 + 1e-9)
        assert high >= sgdstab.threshold(g, 2, curve.sampling, momentum=0.9).eta_star * (1 - 1e-9)
    ref = cli("region", "--jacobian", jpath, "--outputs", c, "--sampling", "with,bernoulli", "--batches", f"1,2,{n}",
              "--mark", "0.05,2", "--momentum", 0.9)
    assert ref.pop("engine") == "exact" and ref.pop("engine_reason").startswith("rank ")  # momentum's band exists now
    assert_same(d, ref)
    eta = sgdstab.threshold(g, 2, "with", momentum=0.9, nesterov=True).eta_star
    mc = sgdstab.montecarlo(g, 0.7 * eta, 2, "with", steps=10, trajectories=2000, blocks=300, seed=5, momentum=0.9,
                            nesterov=True)
    assert mc.verdict == "agree" and mc.rho < 1 and math.isclose(mc.eta_star, eta, rel_tol=1e-9)
    ref = cli("montecarlo", "--jacobian", jpath, "--outputs", c, "--sampling", "with", "--lr", repr(0.7 * eta),
              "--batch", 2, "--steps", 10, "--trajectories", 2000, "--blocks", 300, "--seed", 5, "--momentum", 0.9,
              "--nesterov")
    assert_same(mc.to_dict(), ref)
    with pytest.raises(ValueError, match="needs momentum"):
        sgdstab.montecarlo(g, 0.01, 2, nesterov=True)
    with pytest.raises(ValueError, match="beta"):
        sgdstab.region(g, momentum=1.5)


class NumpyModel(sgdstab.LinearizedModel):
    """A LinearizedModel written in Python: products of a NumPy Jacobian (the default, probing sample_grams)."""

    def __init__(self, j, c, broken=None):
        super().__init__()
        self.j, self.c, self.broken, self.calls = j, c, broken, 0

    def samples(self):
        return self.j.shape[0] // self.c

    def outputs(self):
        return self.c

    def params(self):
        return self.j.shape[1]

    def jacobian_times(self, v):
        self.calls += 1
        if self.broken == "raise":
            raise RuntimeError("the model broke")
        return (self.j @ v)[:-1] if self.broken == "shape" else self.j @ v

    def jacobian_transpose_times(self, u):
        return self.j.T @ u


def test_band_of_a_python_model_equals_the_band_of_its_jacobian(problems):
    # The band from products given by Python code is the C++ JacobianModel's
    # band (same seed, same arithmetic up to rounding), contains eta* of the
    # same Jacobian, and its to_dict() is the CLI's JSON layout.
    for j, c, _, _ in problems.values():
        n = j.shape[0] // c
        g = sgdstab.Geometry.from_jacobian(j, c)
        py_model = NumpyModel(j, c)
        for b in (1, 2, n):
            eta = sgdstab.threshold(g, b, "with", tolerance=1e-11).eta_star
            ours = sgdstab.band(py_model, b, "with", subspace=4, lanczos_steps=6)
            cpp = sgdstab.band(sgdstab.JacobianModel(j, c), b, "with", subspace=4, lanczos_steps=6)
            assert math.isclose(ours.eta_high, cpp.eta_high, rel_tol=1e-10)
            assert math.isclose(ours.eta_low, cpp.eta_low, rel_tol=1e-10)
            assert ours.eta_low_certified <= eta * (1 + 1e-9) and ours.eta_high >= eta * (1 - 1e-9)
            assert ours.converged and ours.products == cpp.products > 0
            d = ours.to_dict()
            assert d["matrix_free"] and d["options"]["subspace"] == 4 and d["batch"] == b
        assert py_model.calls > 0
        # The Geometry input: the r x r band around the same eta*.
        gb = sgdstab.band(g, 2, "with")
        eta = sgdstab.threshold(g, 2, "with", tolerance=1e-11).eta_star
        assert gb.eta_low <= eta * (1 + 1e-9) <= gb.eta_high * (1 + 2e-9) and not gb.to_dict()["matrix_free"]
    many = sgdstab.bands(sgdstab.JacobianModel(j, c), [1, 2], "without")
    assert [r.batch for r in many] == [1, 2]
    # The band region: per scheme the bands of that scheme alone (the same
    # stream), each containing its eta*, for fewer products than the calls
    # one by one (the Krylov subspace of H is shared).
    jm = sgdstab.JacobianModel(j, c)
    region = sgdstab.band_region(jm, ["without", "bernoulli"], [1, 2], subspace=4, lanczos_steps=6)
    assert len(region) == 2 and all(len(row) == 2 for row in region)
    alone = [sgdstab.bands(jm, [1, 2], s, subspace=4, lanczos_steps=6) for s in ("without", "bernoulli")]
    g = sgdstab.Geometry.from_jacobian(j, c)
    for row, ref, s in zip(region, alone, ("without", "bernoulli")):
        for r, a in zip(row, ref):
            eta = sgdstab.threshold(g, r.batch, s, tolerance=1e-11).eta_star
            assert r.sampling == s and r.eta_low == a.eta_low and r.eta_high == a.eta_high
            assert r.eta_low_certified <= eta * (1 + 1e-9) and r.eta_high >= eta * (1 - 1e-9)
            assert r.to_dict()["sampling"] == s
            assert r.subspace_doublings == a.subspace_doublings == r.to_dict()["subspace_doublings"]
    assert region[0][0].products < alone[0][0].products + alone[1][0].products
    # With a fixed subspace (subspace_doublings=0) the saving is exactly the shared Lanczos run of H.
    fixed = dict(subspace=4, lanczos_steps=6, subspace_doublings=0)
    region = sgdstab.band_region(jm, ["without", "bernoulli"], [1, 2], **fixed)
    alone = [sgdstab.bands(jm, [1, 2], s, **fixed) for s in ("without", "bernoulli")]
    assert all(r.subspace_doublings == 0 for row in region for r in row)
    assert region[0][0].to_dict()["options"]["subspace_doublings"] == 0
    shared = 2 * 4 + 1  # J^T u, then J q and J^T (J q) for each of the subspace=4 Lanczos vectors of H
    assert region[0][0].products == alone[0][0].products + alone[1][0].products - shared
    assert len(sgdstab.band_region(jm, batches=[2])) == 3  # every scheme by default
    with pytest.raises(ValueError, match="sampling"):
        sgdstab.band_region(jm, ["sometimes"], [1])
    assert set(sgdstab.band_options()) >= {"tolerance", "subspace", "lanczos_steps", "delta", "seed"}


def test_a_broken_python_model_raises_a_clear_error(problems):
    j, c, _, _ = problems[2]
    with pytest.raises(RuntimeError, match="the model broke"):
        sgdstab.band(NumpyModel(j, c, broken="raise"), 2)
    with pytest.raises(ValueError, match=r"jacobian_times\(\) returned"):
        sgdstab.band(NumpyModel(j, c, broken="shape"), 2)
    with pytest.raises(ValueError, match="batch size"):
        sgdstab.band(NumpyModel(j, c), 0)
    with pytest.raises(TypeError, match="band options"):
        sgdstab.band(NumpyModel(j, c), 2, subspaces=3)
    with pytest.raises(TypeError, match="Geometry or a sgdstab.LinearizedModel"):
        sgdstab.band(j, 2)

    class Incomplete(sgdstab.LinearizedModel):
        def samples(self):
            return 3

    with pytest.raises(TypeError, match="not implemented"):
        sgdstab.band(Incomplete(), 1)


def test_softmax_curvature_and_adam_equal_the_program_and_the_closed_forms(problems, cli, tmp_path):
    j, c, jpath, _ = problems[2]
    n, p = j.shape[0] // c, j.shape[1]
    if c < 2:
        pytest.skip("needs C >= 2")
    rng = np.random.default_rng(5)
    z = rng.standard_normal((n, c))
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.save(tmp_path / "probs.npy", probs)
    s = sgdstab.softmax_curvature(probs)
    # S_i = diag(p_i) - p_i p_i^T, written out with NumPy.
    for i in range(n):
        np.testing.assert_allclose(s[i * c:(i + 1) * c], np.diag(probs[i]) - np.outer(probs[i], probs[i]),
                                   rtol=0, atol=1e-15)
    jc = sgdstab.apply_curvature(j, s, c)
    # h_i = J_i^T S_i J_i: the curved Jacobian's per-sample Hessians.
    for i in range(n):
        ji = j[i * c:(i + 1) * c]
        np.testing.assert_allclose(jc[i * c:(i + 1) * c].T @ jc[i * c:(i + 1) * c], ji.T @ s[i * c:(i + 1) * c] @ ji,
                                   rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sgdstab.apply_curvature_to_gram(j @ j.T, s, c), jc @ jc.T, rtol=1e-12, atol=1e-12)
    g = sgdstab.Geometry.from_jacobian(jc, c)
    r = sgdstab.threshold(g, 2, "with")
    assert_same(r.to_dict(), cli("threshold", "--jacobian", jpath, "--outputs", c, "--batch", 2, "--sampling", "with",
                                 "--softmax", str(tmp_path / "probs.npy")), skip=("loss_curvature",))
    # Adam with a frozen preconditioner.
    pc = np.exp(rng.standard_normal(p))
    np.save(tmp_path / "pc.npy", pc.reshape(-1, 1))
    jp = sgdstab.precondition(j, pc)
    np.testing.assert_allclose(jp, j / np.sqrt(pc)[None, :], rtol=1e-15)
    gp = sgdstab.Geometry.from_jacobian(jp, c)
    a = sgdstab.adam_threshold(gp, 2, "without", beta1=0.9)
    assert a.converged
    assert_same(a.to_dict(), cli("threshold", "--jacobian", jpath, "--outputs", c, "--batch", 2, "--optimizer", "adam",
                                 "--preconditioner", str(tmp_path / "pc.npy")), skip=("preconditioner",))
    rad = sgdstab.adam_radius(gp, 0.8 * a.eta_star, 2, "without", beta1=0.9)
    assert rad.converged and rad.rho < 1
    assert_same(rad.to_dict(), cli("radius", "--jacobian", jpath, "--outputs", c, "--batch", 2, "--optimizer", "adam",
                                   "--lr", repr(0.8 * a.eta_star), "--preconditioner", str(tmp_path / "pc.npy")),
                skip=("preconditioner",))
    cur = sgdstab.adam_curve(gp, [2, n], "without", beta1=0.9)
    assert math.isclose(cur.points[0].eta_star, a.eta_star, rel_tol=1e-7)
    # Full batch: Cohen et al.'s (2 + 2 beta1) / ((1 - beta1) lambda_max(P^{-1} H)), with NumPy.
    h = j.T @ j / n
    lam = np.linalg.eigvals(np.diag(1 / pc) @ h).real.max()
    assert math.isclose(cur.points[1].eta_star, 38 / lam, rel_tol=1e-8)
    # AdamW's decoupled decay (theory/adaptive.md, section 5): the program's JSON, and the shifted plateau at B = n.
    wd = 0.4 * lam
    aw = sgdstab.adam_threshold(gp, 2, "without", beta1=0.9, weight_decay=wd)
    assert aw.converged and abs(aw.eta_star / a.eta_star - 1) > 0.05  # the decay is felt (here it raises eta*)
    assert_same(aw.to_dict(), cli("threshold", "--jacobian", jpath, "--outputs", c, "--batch", 2, "--optimizer",
                                  "adamw", "--weight-decay", repr(wd), "--preconditioner", str(tmp_path / "pc.npy")),
                skip=("preconditioner",))
    radw = sgdstab.adam_radius(gp, 1.1 * aw.eta_star, 2, "without", beta1=0.9, weight_decay=wd)
    assert radw.converged and radw.rho > 1
    assert_same(radw.to_dict(), cli("radius", "--jacobian", jpath, "--outputs", c, "--batch", 2, "--optimizer",
                                    "adamw", "--weight-decay", repr(wd), "--lr", repr(1.1 * aw.eta_star),
                                    "--preconditioner", str(tmp_path / "pc.npy")), skip=("preconditioner",))
    curw = sgdstab.adam_curve(gp, [2, n], "without", beta1=0.9, weight_decay=wd)
    assert math.isclose(curw.points[0].eta_star, aw.eta_star, rel_tol=1e-7)
    assert math.isclose(curw.points[1].eta_star, 2 * 1.9 / (0.1 * lam + 1.9 * wd), rel_tol=1e-8)
    reg = sgdstab.adam_region(gp, None, [2, n], beta1=0.9, weight_decay=wd)
    assert reg.converged
    assert math.isclose(reg.curves[0].points[0].eta_star, aw.eta_star, rel_tol=1e-7)
    assert_same(reg.to_dict(), cli("region", "--jacobian", jpath, "--outputs", c, "--batches", f"2,{n}", "--optimizer",
                                   "adamw", "--weight-decay", repr(wd), "--preconditioner", str(tmp_path / "pc.npy")),
                skip=("preconditioner", "seconds", "apply_seconds", "engine", "engine_reason"))
    with pytest.raises(ValueError, match="beta1"):
        sgdstab.adam_threshold(gp, 2, beta1=1.0)
    with pytest.raises(ValueError, match="entry 0"):
        sgdstab.precondition(j, -pc)


def test_covariance_equals_the_program_and_the_closed_form(cli, tmp_path):
    # A non-interpolating least-squares minimum (p < n C) and Mulayoff &
    # Michaeli's closed form in parameter space with NumPy:
    # vec Sigma = lr beta (2C - lr D)^{-1} vec Sigma_g, 2C = I (x) H + H (x) I,
    # D = E[H_B (x) H_B] (with replacement: (1 - 1/B) H (x) H + (1/B) mean h_i (x) h_i), beta = 1/B.
    rng = np.random.default_rng(3)
    n, p, b, lr = 7, 3, 2, 0.05
    jac = rng.standard_normal((n, p))
    y = rng.standard_normal(n)
    r = jac @ np.linalg.lstsq(jac, y, rcond=None)[0] - y
    np.save(tmp_path / "J.npy", jac)
    np.save(tmp_path / "r.npy", r.reshape(-1, 1))
    g = sgdstab.Geometry.from_jacobian(jac, 1)
    res = sgdstab.covariance(g, r, lr, b, "with")
    assert res.converged and res.rho < 1
    assert_same(res.to_dict(), cli("covariance", "--jacobian", tmp_path / "J.npy", "--residual", tmp_path / "r.npy",
                                   "--lr", repr(lr), "--batch", b, "--sampling", "with"))
    h = jac.T @ jac / n
    hs = [np.outer(jac[i], jac[i]) for i in range(n)]
    grads = jac * r[:, None]
    sigma_g = grads.T @ grads / n
    eye = np.eye(p)
    two_c = np.kron(eye, h) + np.kron(h, eye)
    d = (1 - 1 / b) * np.kron(h, h) + sum(np.kron(hi, hi) for hi in hs) / (n * b)
    sigma = np.linalg.solve(two_c - lr * d, lr / b * sigma_g.reshape(-1)).reshape(p, p)
    assert math.isclose(res.trace, np.trace(sigma), rel_tol=1e-8)
    assert math.isclose(res.excess_loss, 0.5 * np.trace(h @ sigma), rel_tol=1e-8)
    np.testing.assert_allclose(res.top_eigenvalues, np.sort(np.linalg.eigvalsh(sigma))[::-1], rtol=1e-8)
    # The same from parameter-space gradients g_i = J_i^T r_i.
    via_g = sgdstab.covariance(g, None, lr, b, "with", gradients=grads, jacobian=jac)
    assert math.isclose(via_g.trace, res.trace, rel_tol=1e-10)
    # Momentum (heavy-ball 0.5): the program, and the fixed point of torch's own update enumerated with NumPy
    # over the n^2 ordered batches: b' = beta b + g, delta' = delta - lr b', g = H_B delta + g_B.
    beta = 0.5
    mres = sgdstab.covariance(g, r, lr, b, "with", momentum=beta)
    assert mres.converged and mres.rho < 1
    assert_same(mres.to_dict(), cli("covariance", "--jacobian", tmp_path / "J.npy", "--residual", tmp_path / "r.npy",
                                    "--lr", repr(lr), "--batch", b, "--sampling", "with", "--momentum", beta))
    q = 2 * p
    k = np.zeros((q * q, q * q))
    noise = np.zeros(q * q)
    for i in range(n):
        for j2 in range(n):
            hb = (hs[i] + hs[j2]) / 2
            gb = (grads[i] + grads[j2]) / 2
            m = np.block([[eye - lr * hb, -lr * beta * eye], [hb, beta * eye]])
            nb = np.concatenate([-lr * gb, gb])
            k += np.kron(m, m) / n ** 2
            noise += np.kron(nb, nb) / n ** 2
    z = np.linalg.solve(np.eye(q * q) - k, noise).reshape(q, q)[:p, :p]
    assert math.isclose(mres.trace, np.trace(z), rel_tol=1e-8)
    assert math.isclose(mres.excess_loss, 0.5 * np.trace(h @ z), rel_tol=1e-8)
    assert abs(mres.trace / res.trace - 1) > 0.05
    # Weight decay (theory/covariance.md, section 8) at the ridge minimum, with replacement: the program, the
    # gradients form, and the fixed point of delta' = ((1 - lr lam) I - lr H_B) delta - lr (g_B + lam theta*)
    # enumerated over the n^2 ordered batches.
    lam = 0.5 * g.lambda_max
    theta = np.linalg.solve(h + lam * eye, jac.T @ y / n)
    rw = jac @ theta - y
    np.save(tmp_path / "rw.npy", rw.reshape(-1, 1))
    np.save(tmp_path / "theta.npy", theta.reshape(-1, 1))  # the program reads 2-D files
    wres = sgdstab.covariance(g, rw, lr, b, "with", weight_decay=lam, theta=theta, jacobian=jac)
    assert wres.converged and wres.rho < 1 and wres.weight_decay == lam
    assert_same(wres.to_dict(), cli("covariance", "--jacobian", tmp_path / "J.npy", "--residual", tmp_path / "rw.npy",
                                    "--lr", repr(lr), "--batch", b, "--sampling", "with", "--weight-decay", repr(lam),
                                    "--theta", tmp_path / "theta.npy"))
    gw = jac * rw[:, None]
    via_gw = sgdstab.covariance(g, None, lr, b, "with", gradients=gw, jacobian=jac, weight_decay=lam, theta=theta)
    assert math.isclose(via_gw.trace, wres.trace, rel_tol=1e-10)
    kw, nw = np.zeros((p * p, p * p)), np.zeros(p * p)
    for i in range(n):
        for j2 in range(n):
            a = (1 - lr * lam) * eye - lr * (hs[i] + hs[j2]) / 2
            c_b = -lr * ((gw[i] + gw[j2]) / 2 + lam * theta)
            kw += np.kron(a, a) / n ** 2
            nw += np.kron(c_b, c_b) / n ** 2
    sw = np.linalg.solve(np.eye(p * p) - kw, nw).reshape(p, p)
    assert math.isclose(wres.trace, np.trace(sw), rel_tol=1e-8)
    assert math.isclose(wres.excess_loss, 0.5 * np.trace(h @ sw), rel_tol=1e-8)
    with pytest.raises(ValueError, match="not a minimum of the regularized loss"):
        sgdstab.covariance(g, r, lr, b, "with", weight_decay=lam, theta=theta, jacobian=jac)
    with pytest.raises(ValueError, match="weight_decay: must be finite"):
        sgdstab.covariance(g, rw, lr, b, "with", weight_decay=float("nan"), theta=theta, jacobian=jac)
    with pytest.raises(ValueError, match="go together"):
        sgdstab.covariance(g, rw, lr, b, "with", theta=theta, jacobian=jac)
    with pytest.raises(ValueError, match="nesterov"):
        sgdstab.covariance(g, r, lr, b, nesterov=True)
    with pytest.raises(ValueError, match="not a minimum"):
        sgdstab.covariance(g, r + 0.1, lr, b)
    with pytest.raises(ValueError, match=">= 1"):
        sgdstab.covariance(g, r, 10 * sgdstab.threshold(g, b, "with").eta_star, b, "with")


def test_adam_l2_region_from_the_jacobian_and_the_preconditioner(tmp_path):
    # sgdstab.adam_l2_region: P = 1 is heavy-ball SGD's region with L2 decay at lr (1 - beta1) (the r x r
    # solver); every point equals adam_l2_curve's; the marks are adam_l2_radius's; band() holds the points.
    rng = np.random.default_rng(4)
    jac = rng.standard_normal((8, 5))
    pre = np.exp(rng.standard_normal(5))
    g = sgdstab.Geometry.from_jacobian(jac, 2)
    ones = sgdstab.adam_l2_region(jac, np.ones(5), ["without", "with"], [1, 2, 4], outputs=2, beta1=0.9,
                                  weight_decay=0.3)
    hb = sgdstab.region(g, ["without", "with"], [1, 2, 4], momentum=0.9, weight_decay=0.3)
    for got, want in zip(ones.curves, hb.curves):
        for a, b in zip(got.points, want.points):
            assert a.eta_star == pytest.approx(b.eta_star / 0.1, rel=1e-8)
    svg = tmp_path / "l2.svg"
    reg = sgdstab.adam_l2_region(jac, pre, None, [1, 2, 4], marks=[(0.05, 2)], plot=svg, outputs=2, beta1=0.0,
                                 weight_decay=0.2)
    assert reg.converged and len(reg.curves) == 3
    for curve in reg.curves:
        want = sgdstab.adam_l2_curve(jac, pre, [1, 2, 4], curve.sampling, outputs=2, beta1=0.0, weight_decay=0.2)
        for a, b in zip(curve.points, want.points):
            assert a.eta_star == pytest.approx(b.eta_star, rel=1e-12)
        low, high = reg.band(curve.sampling, 3)
        assert curve.points[1].eta_low <= high and low <= curve.points[2].eta_high and 0 < low <= high
    d = reg.to_dict()
    assert d["optimizer"] == "rmsprop" and d["weight_decay"] == 0.2 and "eta_gd" not in d
    for row in d["marks"]:
        rho = sgdstab.adam_l2_radius(jac, pre, 0.05, 2, row["sampling"], outputs=2, beta1=0.0, weight_decay=0.2).rho
        assert row["rho"] == pytest.approx(rho, rel=1e-9)
    assert "full-batch RMSProp limit" in svg.read_text()
    with pytest.raises(ValueError, match="weight decay"):
        sgdstab.adam_l2_region(jac, pre, outputs=2, weight_decay=-1.0)


def test_adam_l2_montecarlo_from_the_jacobian_and_the_preconditioner():
    # sgdstab.adam_l2_montecarlo: agrees below eta*, its rho is adam_l2_radius's; P = 1 (full rank) is heavy-ball
    # SGD with L2 decay at lr (1 - beta1), whose rho the r x r Monte Carlo reports.
    rng = np.random.default_rng(5)
    jac = rng.standard_normal((8, 5))
    pre = np.exp(rng.standard_normal(5))
    eta = sgdstab.adam_l2_threshold(jac, pre, 2, "with", outputs=2, beta1=0.5, weight_decay=0.3).eta_star
    # Short horizon below eta*: the moment test assumes light tails (theory/montecarlo.md, section 8).
    mc = sgdstab.adam_l2_montecarlo(jac, pre, 0.7 * eta, 2, "with", outputs=2, beta1=0.5, weight_decay=0.3,
                                    steps=8, trajectories=4000, blocks=2000)
    assert mc.verdict == "agree", mc.reason
    assert mc.eta_star == pytest.approx(eta, rel=1e-12)
    want = sgdstab.adam_l2_radius(jac, pre, 0.7 * eta, 2, "with", outputs=2, beta1=0.5, weight_decay=0.3).rho
    assert mc.rho == pytest.approx(want, rel=1e-9)
    d = mc.to_dict()
    assert d["optimizer"] == "adam" and d["weight_decay"] == 0.3 and d["heavy_ball_lr"] == pytest.approx(0.35 * eta)
    assert "phi = P^{1/2} theta" in d["note"]
    g = sgdstab.Geometry.from_jacobian(jac, 2)
    ones = sgdstab.adam_l2_montecarlo(jac, np.ones(5), 0.1, 2, "with", outputs=2, beta1=0.5, weight_decay=0.3,
                                      trajectories=200, blocks=200)
    hb = sgdstab.montecarlo(g, 0.05, 2, "with", momentum=0.5, weight_decay=0.3, trajectories=200, blocks=200)
    assert ones.rho == pytest.approx(hb.rho, rel=1e-8)
    with pytest.raises(ValueError, match="weight_decay"):
        sgdstab.adam_l2_montecarlo(jac, pre, 0.1, 2, outputs=2, weight_decay=0.0)
