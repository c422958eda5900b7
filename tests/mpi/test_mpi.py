# sgdstab-mpi (issue #17) against the serial program on the same files:
# eta*, rho and region points at P = 1 and 2 ranks (threshold also at 3 and
# 4: other ScaLAPACK grids) to 1e-9 for every scheme, C = 1, 2, 3,
# rank-deficient Grams, every input layout read in slices, more ranks than
# samples; bad input, errors seen by one rank only, non-convergence and
# memory refusal give the serial exit codes with one message (rank 0 only)
# and no hang. Run by ctest as MPI.program with SGDSTAB_CLI and SGDSTAB_MPI set.
import json
import os
import subprocess

import numpy as np
import pytest

CLI = os.environ["SGDSTAB_CLI"]
MPI = os.environ["SGDSTAB_MPI"]
SCHEMES = ["without", "with", "bernoulli"]
# Root in CI containers; two ranks on two cores (or fewer).
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--mca", "btl_vader_single_copy_mechanism", "none"]
TIMEOUT = 120  # a hang fails the test instead of stalling CI


def run(args, ranks=None):
    cmd = ([*MPIRUN, "-np", str(ranks), MPI] if ranks else [CLI]) + [str(a) for a in args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
    return p.returncode, p.stdout, p.stderr


def jacobian(n, c, p, seed):
    rng = np.random.default_rng(seed)
    j = rng.standard_normal((n * c, p))
    return j * np.repeat(rng.uniform(0.3, 2.0, n), c)[:, None]  # samples of different scales


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("mpi")
    out = []
    # (n, C, p): full column rank, and rank-deficient (n C > p, and a duplicated sample).
    for n, c, p, seed in [(9, 1, 12, 1), (6, 2, 20, 2), (5, 3, 9, 3), (8, 2, 5, 4)]:
        j = jacobian(n, c, p, seed)
        if seed == 4:
            j[2 * c:3 * c] = j[:c]
        np.save(d / f"j{seed}.npy", j)
        np.save(d / f"k{seed}.npy", j @ j.T)
        out.append((d / f"j{seed}.npy", d / f"k{seed}.npy", n, c))
    return out


@pytest.fixture(scope="module")
def serial(files):
    """The serial program's eta* and rho (at 0.9 eta*) for every file and scheme."""
    out = {}
    for jpath, kpath, n, c in files:
        # Jacobian input for the first files, Gram input for the others.
        source = ["--jacobian", jpath] if c < 3 else ["--gram", kpath]
        for s in SCHEMES:
            args = [*source, "--outputs", c, "--batch", 2, "--sampling", s]
            code, out_t, err = run(["threshold", *args])
            assert code == 0, err
            t = json.loads(out_t)
            lr = repr(0.9 * t["eta_star"])
            code, out_r, err = run(["radius", *args, "--lr", lr])
            assert code == 0, err
            out[(str(jpath), s)] = (args, t, lr, json.loads(out_r)["rho"])
    return out


@pytest.mark.parametrize("ranks", [1, 2])
def test_threshold_and_radius_equal_the_serial_program(serial, ranks):
    for (name, s), (args, t, lr, rho) in serial.items():
        code, out, err = run(["threshold", *args], ranks)
        assert code == 0, err
        dist = json.loads(out)
        assert dist["ranks"] == ranks and dist["converged"], dist["message"]
        assert abs(dist["eta_star"] / t["eta_star"] - 1) <= 1e-9, (name, s, dist["eta_star"], t["eta_star"])
        for key in ("samples", "outputs", "rank", "batch", "sampling", "lambda_max", "eta_gd"):
            assert dist[key] == t[key] or abs(dist[key] / t[key] - 1) <= 1e-12, key
        code, out, err = run(["radius", *args, "--lr", lr], ranks)
        assert code == 0, err
        r = json.loads(out)
        assert r["converged"] and abs(r["rho"] / rho - 1) <= 1e-9, (name, s, r["rho"], rho)
        assert r["rho"] < 1


@pytest.mark.parametrize("ranks", [1, 2])
def test_region_equals_the_serial_program(files, tmp_path, ranks):
    import xml.etree.ElementTree as ET
    _, kpath, n, c = files[1]
    args = ["region", "--gram", kpath, "--outputs", c, "--mark", "0.05,2", "--mark", "0.5,6"]
    code, out, err = run(args)
    assert code == 0, err
    serial = json.loads(out)
    svg = tmp_path / "region.svg"
    code, out, err = run([*args, "--plot", svg], ranks)
    assert code == 0, err
    dist = json.loads(out)
    assert dist["ranks"] == ranks and dist["converged"] and dist["plot"] == str(svg)
    ET.parse(svg)  # well-formed, written once
    for cs, cd in zip(serial["curves"], dist["curves"]):
        assert cs["sampling"] == cd["sampling"]
        for ps, pd in zip(cs["points"], cd["points"]):
            assert ps["batch"] == pd["batch"]
            assert abs(pd["eta_star"] / ps["eta_star"] - 1) <= 1e-9, (cs["sampling"], ps, pd)
            assert pd["eta_low"] <= ps["eta_star"] * (1 + 1e-9) and pd["eta_high"] >= ps["eta_star"] * (1 - 1e-9)
    for ms, md in zip(serial["marks"], dist["marks"]):
        assert ms["stable"] == md["stable"] and abs(md["rho"] / ms["rho"] - 1) <= 1e-9


def test_bad_input_fails_like_the_serial_program_with_one_message(files, tmp_path):
    jpath, _, n, c = files[0]
    truncated = tmp_path / "t.npy"
    truncated.write_bytes(jpath.read_bytes()[:100])
    cases = [
        ["threshold", "--jacobian", jpath, "--batch", n + 1],           # B outside 1..n
        ["threshold", "--jacobian", tmp_path / "missing.npy", "--batch", 1],
        ["threshold", "--jacobian", truncated, "--batch", 1],
        ["radius", "--jacobian", jpath, "--batch", 1, "--lr", -1],
        ["threshold", "--jacobian", jpath, "--batch", 1, "--tol", "nan"],
    ]
    for args in cases:
        serial, _, serr = run(args)
        code, out, err = run(args, 2)
        assert serial != 0 and code == serial, (args, code, serial, err)
        assert out == ""
        assert err.count("sgdstab: ") == serr.count("sgdstab: ") == 1, err  # rank 0 only
    code, out, err = run(["curve", "--jacobian", jpath], 2)
    assert code == 2 and "runs only threshold, radius" in err
    code, out, err = run(["threshold", "--jacobian", jpath, "--batch", 1, "--momentum", 0.9], 2)
    assert code == 2 and "plain SGD only" in err


def test_inputs_read_in_slices_equal_the_serial_program(tmp_path):
    """Fortran-order and float32 .npy, CSV, and more ranks than samples (a rank
    with no rows): the distributed reduction gives the serial answer."""
    j = jacobian(5, 2, 7, 7)
    k = j @ j.T
    np.save(tmp_path / "kf.npy", np.asfortranarray(k))
    np.save(tmp_path / "jf.npy", np.asfortranarray(j))
    np.save(tmp_path / "j32.npy", j.astype(np.float32))
    np.savetxt(tmp_path / "k.csv", k, delimiter=",", fmt="%.17g")
    np.save(tmp_path / "k1.npy", k[:2, :2])  # n = 1, C = 2: rank 1 of 2 holds no sample
    cases = [["--gram", tmp_path / "kf.npy", "--outputs", 2, "--batch", 3],
             ["--jacobian", tmp_path / "jf.npy", "--outputs", 2, "--batch", 2],
             ["--jacobian", tmp_path / "j32.npy", "--outputs", 1, "--batch", 4],
             ["--gram", tmp_path / "k.csv", "--outputs", 1, "--batch", 7],
             ["--gram", tmp_path / "k1.npy", "--outputs", 2, "--batch", 1]]
    for args in cases:
        code, out, err = run(["threshold", *args, "--sampling", "with"])
        assert code == 0, err
        t = json.loads(out)
        code, out, err = run(["threshold", *args, "--sampling", "with"], 2)
        assert code == 0, (args, err)
        d = json.loads(out)
        assert abs(d["eta_star"] / t["eta_star"] - 1) <= 1e-9, (args, d["eta_star"], t["eta_star"])
        assert d["rank"] == t["rank"] and abs(d["hessian_frobenius"] / t["hessian_frobenius"] - 1) <= 1e-12
        parts = [d[k] for k in ("communication_seconds", "product_seconds", "elementwise_seconds")]
        assert d["reduction_seconds"] > 0 and min(parts) >= 0
        assert abs(sum(parts) - d["application_seconds"]) <= 1e-9 * max(1.0, d["application_seconds"])


def test_errors_found_on_one_rank_end_every_rank_like_the_serial_program(tmp_path):
    """A NaN in the last sample's row (read by rank 1 only), an asymmetric or
    indefinite Gram, a Gram that does not split into outputs: the serial exit
    code and message, printed once, on every split."""
    j = jacobian(6, 1, 8, 8)
    k = j @ j.T
    bad = {}
    nan = k.copy()
    nan[5, 3] = np.nan
    bad["nan"] = nan
    asym = k.copy()
    asym[5, 0] += 1e-3 * np.abs(k).max()
    bad["asym"] = asym
    bad["indefinite"] = k - 0.5 * np.abs(np.linalg.eigvalsh(k)).max() * np.eye(6)
    for name, m in bad.items():
        np.save(tmp_path / f"{name}.npy", m)
    cases = [["threshold", "--gram", tmp_path / f"{name}.npy", "--batch", 2] for name in bad]
    cases.append(["threshold", "--gram", tmp_path / "asym.npy", "--outputs", 4, "--batch", 1])
    cases.append(["threshold", "--jacobian", tmp_path / "nan.npy", "--batch", 1])
    for args in cases:
        serial, _, serr = run(args)
        for ranks in (1, 2):
            code, out, err = run(args, ranks)
            assert serial != 0 and code == serial, (args, ranks, code, serial, err)
            assert out == "" and err.count("sgdstab: ") == 1, err
    code, _, err = run(["threshold", "--jacobian", tmp_path / "nan.npy", "--batch", 1, "--space", "parameter"], 2)
    assert code == 2 and "sample space" in err


def test_non_convergence_and_memory_refusal_like_the_serial_program(files):
    """Too few restarts: not_converged, exit 3 (not to be trusted; the serial
    program's code for an unconverged result), the JSON once (the serial
    program falls back to its dense method at this size instead); a memory
    limit below what the reduction and the operator need: exit 1 with one
    message, as the serial program, checked before allocating."""
    jpath, kpath, n, c = files[1]
    args = ["threshold", "--gram", kpath, "--outputs", c, "--batch", 2, "--tol", "1e-15", "--max-restarts", 1]
    for ranks in (1, 2):
        code, out, err = run([*args, "--ncv", 4], ranks)
        assert code == 3, (ranks, code, err)
        dist = json.loads(out)  # printed once: one JSON document
        assert not dist["converged"] and dist["status"] == "not_converged" and "did not converge" in dist["message"]
    limit = ["--memory-limit", "0.001"]
    for cmd in (["threshold", "--batch", 2], ["region"]):
        serial, _, serr = run([cmd[0], "--gram", kpath, "--outputs", c, *cmd[1:], *limit])
        code, out, err = run([cmd[0], "--gram", kpath, "--outputs", c, *cmd[1:], *limit], 2)
        assert serial == 1 and code == 1 and out == "", (cmd, code, err)
        assert err.count("sgdstab: ") == 1 and "too large" in err and "too large" in serr, err
    code, out, err = run(["threshold", "--gram", kpath, "--outputs", c, "--batch", 2, "--max-restarts", 0], 2)
    assert code == 2 and "--max-restarts" in err


@pytest.mark.parametrize("ranks", [3, 4])
def test_process_grids_beyond_two_ranks(files, ranks):
    """P = 3 (a 1 x 3 ScaLAPACK grid, uneven blocks) and P = 4 (2 x 2, where
    pdgemr2d really redistributes): the serial eta* for every scheme."""
    _, kpath, n, c = files[2]
    for s in SCHEMES:
        args = ["threshold", "--gram", kpath, "--outputs", c, "--batch", 2, "--sampling", s]
        code, out, err = run(args)
        assert code == 0, err
        t = json.loads(out)
        code, out, err = run(args, ranks)
        assert code == 0, err
        d = json.loads(out)
        assert d["ranks"] == ranks and abs(d["eta_star"] / t["eta_star"] - 1) <= 1e-9, (s, d["eta_star"], t["eta_star"])
