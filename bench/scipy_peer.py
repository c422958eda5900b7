#!/usr/bin/env python3
"""The SciPy peer of one exact threshold (issue #33, item 4).

eta*(B) of one Gram K = J J^T computed twice in the same run, on the same
matrix: by sgdstab (Python binding: Geometry.from_gram, then threshold)
and by a careful SciPy implementation of the same mathematics
(theory/threshold.md, eq. 5): the reduction by scipy.linalg.eigh of K,
then ARPACK (scipy.sparse.linalg.eigsh, k = 1, which = "LA") on the
operator A^{-1/2} Q A^{-1/2} in packed symmetric coordinates, each
application two GEMMs of (n C) x r x r (Z S and Z^T Y) and the per-sample
C x C blocks in between (numpy einsum), started from A^{1/2}(I) like the
library. Prints one JSON object: the machine, both eta*, their relative
difference, the times (reduction, solve, total) and applications of each,
and the ratio SciPy / sgdstab of the totals.

Default Gram: the clustered class of bench/bench_region.cpp (J Gaussian,
n C x 1.5 n C, rows scaled in blocks of C = 4 by 2^U(-1, 1), B = 8 without
replacement), drawn here with NumPy's generator: the same class, not the
identical matrix; both peers get this one matrix. --gram FILE.npy
--outputs C analyzes a given Gram instead.

usage: PYTHONPATH=build/python python3 bench/scipy_peer.py [--nc 2048] [--batch 8]
       [--sampling without|with] [--tol 1e-10] [--seed 11] [--gram FILE.npy --outputs C]
Needs python3-scipy (scripts/install_deps.sh bench).
"""
import argparse
import json
import os
import time

import numpy as np
import scipy
import scipy.linalg
import scipy.sparse.linalg as sla

import sgdstab


def clustered_gram(nc, seed, c=4):
    rng = np.random.default_rng(seed)
    j = rng.standard_normal((nc, 3 * nc // 2))
    j *= np.repeat(np.exp2(rng.uniform(-1.0, 1.0, nc // c)), c)[:, None]
    return j @ j.T


def factors(sampling, n, b):
    """(alpha, beta) of Q = alpha H S H + beta D(S) (theory/sampling.md)."""
    if sampling == "without":
        beta = (n - b) / (b * (n - 1)) if n > 1 else 0.0
        return 1.0 - beta, beta
    if sampling == "with":
        return 1.0 - 1.0 / b, 1.0 / b
    raise ValueError("--sampling: without or with (Bernoulli has c != 1; not in this peer)")


class ScipyThreshold:
    """eta* by eigh + ARPACK, the library's mathematics in NumPy/SciPy."""

    def __init__(self, gram, c, rank_tol=None):
        nc = gram.shape[0]
        w, v = scipy.linalg.eigh(gram)
        tol = rank_tol if rank_tol is not None else 10 * nc * np.finfo(float).eps
        keep = w > tol * w.max()
        w, v = w[keep][::-1], v[:, keep][:, ::-1]
        self.n, self.c, self.r = nc // c, c, int(keep.sum())
        self.d = w / self.n                                   # H = Z^T Z / n = diag(d)
        self.z = v * np.sqrt(w)                               # Z (n C x r), K = Z Z^T
        self.z3 = self.z.reshape(self.n, c, self.r)
        self.rows, self.cols = np.tril_indices(self.r)        # packed order: lower triangle
        self.off = np.where(self.rows != self.cols, np.sqrt(2.0), 1.0)
        self.inv_sqrt_a = 1.0 / np.sqrt(self.d[self.rows] + self.d[self.cols])
        self.applications = 0

    def unpack(self, x):
        s = np.zeros((self.r, self.r))
        s[self.rows, self.cols] = x / self.off
        return s + np.tril(s, -1).T

    def pack(self, s):
        return s[self.rows, self.cols] * self.off

    def apply(self, x, alpha, beta):
        """A^{-1/2} Q A^{-1/2} x, Q(S) = alpha H S H + beta (1/n) sum_i Z_i^T (Z_i S Z_i^T) Z_i."""
        self.applications += 1
        s = self.unpack(x.ravel() * self.inv_sqrt_a)
        q = alpha * (self.d[:, None] * s * self.d[None, :])
        if beta:
            w3 = (self.z @ s).reshape(self.n, self.c, self.r)            # Z S
            g = np.einsum("icr,idr->icd", w3, self.z3)                   # Z_i S Z_i^T
            y = np.einsum("icd,idr->icr", g, self.z3).reshape(-1, self.r)
            q += (beta / self.n) * (self.z.T @ y)
        return self.pack(0.5 * (q + q.T)) * self.inv_sqrt_a

    def eta_star(self, sampling, batch, tol):
        alpha, beta = factors(sampling, self.n, batch)
        m = self.rows.size
        op = sla.LinearOperator((m, m), matvec=lambda x: self.apply(x, alpha, beta), dtype=float)
        start = self.pack(np.diag(np.sqrt(2.0 * self.d)))
        vals = sla.eigsh(op, k=1, which="LA", tol=tol, v0=start / np.linalg.norm(start), return_eigenvectors=False)
        return 1.0 / vals[0]


def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": model, "cpus": os.cpu_count(), "numpy": np.__version__, "scipy": scipy.__version__,
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
            "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nc", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--sampling", default="without", choices=["without", "with"])
    ap.add_argument("--tol", type=float, default=1e-10)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--gram")
    ap.add_argument("--outputs", type=int, default=4)
    a = ap.parse_args()
    if a.gram:
        gram, c = np.load(a.gram).astype(np.float64), a.outputs
    else:
        if a.nc % 4:
            ap.error("--nc must be a multiple of 4 (C = 4)")
        gram, c = clustered_gram(a.nc, a.seed), 4
    if gram.shape[0] % c:
        ap.error(f"the Gram's order {gram.shape[0]} is not a multiple of --outputs {c}")

    t0 = time.perf_counter()
    g = sgdstab.Geometry.from_gram(gram, c)
    t1 = time.perf_counter()
    ours = sgdstab.threshold(g, a.batch, a.sampling, tolerance=a.tol)
    t2 = time.perf_counter()
    peer = ScipyThreshold(gram, c)
    t3 = time.perf_counter()
    eta_peer = peer.eta_star(a.sampling, a.batch, a.tol)
    t4 = time.perf_counter()

    out = {
        "machine": machine(),
        "nc": gram.shape[0], "outputs": c, "rank": g.rank, "rank_scipy": peer.r, "batch": a.batch,
        "sampling": a.sampling, "tol": a.tol,
        "sgdstab": {"eta_star": ours.eta_star, "converged": ours.converged, "applications": ours.matvecs,
                    "reduction_s": t1 - t0, "solve_s": t2 - t1, "total_s": t2 - t0},
        "scipy": {"eta_star": eta_peer, "applications": peer.applications,
                  "reduction_s": t3 - t2, "solve_s": t4 - t3, "total_s": t4 - t2},
        "relative_difference": abs(ours.eta_star - eta_peer) / eta_peer,
        "ratio_total": (t4 - t2) / (t2 - t0),
        "ratio_solve": (t4 - t3) / (t2 - t1),
    }
    print(json.dumps(out, indent=1))
    if not (ours.converged and out["relative_difference"] <= 1e-8):
        raise SystemExit("the two eta* disagree (or sgdstab's did not converge): the timing compares nothing")


if __name__ == "__main__":
    main()
