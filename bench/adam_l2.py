"""Cost of Adam's exact threshold with its own L2 weight decay (sgdstab.adam_l2_threshold,
theory/adaptive.md section 6) against Adam without decay (adam_threshold, the r x r solver) on the same
Jacobian, in the same run, for growing p.

    PYTHONPATH=build/python python3 bench/adam_l2.py [--p 500,1000,2000] [--n 50] [--c 10] [--batch 8]

A Gaussian Jacobian with rows scaled by 2^u (u uniform in [0, 3)) per sample (the clustered class of the
band benchmarks), P = exp(N(0, 1)) (two decades, as sqrt(v_hat) + eps are), beta1 = 0.9, wd = 1e-3
lambda_max(P^{-1} H), batches without replacement. Prints one JSON line per p."""
import argparse
import json
import time

import numpy as np

import sgdstab


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--p", default="500,1000,2000")
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--c", type=int, default=10)
    ap.add_argument("--batch", type=int, default=8)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    for p in (int(x) for x in a.p.split(",")):
        jac = rng.standard_normal((a.n * a.c, p)) / np.sqrt(p)
        jac *= np.repeat(2.0 ** rng.uniform(0, 3, a.n), a.c)[:, None]
        pre = np.exp(rng.standard_normal(p))
        t0 = time.perf_counter()
        g = sgdstab.Geometry.from_jacobian(sgdstab.precondition(jac, pre), a.c)
        plain = sgdstab.adam_threshold(g, a.batch, beta1=0.9)
        t1 = time.perf_counter()
        wd = 1e-3 * g.lambda_max
        l2 = sgdstab.adam_l2_threshold(jac, pre, a.batch, outputs=a.c, beta1=0.9, weight_decay=wd)
        t2 = time.perf_counter()
        print(json.dumps({"p": p, "nC": a.n * a.c, "rank": g.rank, "batch": a.batch,
                          "adam_eta_star": plain.eta_star, "adam_seconds": round(t1 - t0, 2),
                          "adam_l2_eta_star": l2.eta_star, "adam_l2_seconds": round(t2 - t1, 2),
                          "adam_l2_converged": l2.converged, "adam_l2_matvecs": l2.to_dict().get("matvecs"),
                          "machine": sgdstab.machine_info().get("cpu")}), flush=True)


if __name__ == "__main__":
    main()
