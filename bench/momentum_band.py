#!/usr/bin/env python3
"""The momentum band (theory/band.md, section 6) against the exact momentum threshold.

A clustered Gaussian Jacobian (n = 512 samples, C = 2 outputs, p = 1500
parameters, each sample's rows scaled by 2^u, u uniform in (-1, 1), seed 0):
for heavy-ball and Nesterov at beta = 0.9, `sgdstab.bands` at B = 1, 10,
100, 512 without replacement (one call, default options) and
`sgdstab.threshold(..., momentum=0.9)` at each B, with the ratios and the
wall times. Run from the repository root after a build:

    PYTHONPATH=build/python /usr/bin/python3 bench/momentum_band.py
"""
import platform
import sys
import time

import numpy as np

import sgdstab


def main():
    rng = np.random.default_rng(0)
    n, c, p = 512, 2, 1500
    jac = rng.standard_normal((n * c, p)) * np.repeat(2.0 ** rng.uniform(-1, 1, n), c)[:, None]
    geometry = sgdstab.Geometry.from_jacobian(jac, outputs=c)
    model = sgdstab.JacobianModel(jac, c)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    print(f"# {cpu}, nC = {n * c}, rank {geometry.rank}, beta = 0.9, without replacement")
    print("variant B eta_low kind eta_star eta_high low/eta* high/eta* exact_s")
    for nesterov in (False, True):
        start = time.perf_counter()
        bands = sgdstab.bands(model, [1, 10, 100, n], "without", momentum=0.9, nesterov=nesterov)
        band_s = time.perf_counter() - start
        for b in bands:
            start = time.perf_counter()
            exact = sgdstab.threshold(geometry, b.batch, "without", momentum=0.9, nesterov=nesterov)
            exact_s = time.perf_counter() - start
            print(f"{'Nesterov' if nesterov else 'heavy-ball'} {b.batch} {b.eta_low:.4g} {b.eta_low_kind} "
                  f"{exact.eta_star:.4g} {b.eta_high:.4g} {b.eta_low / exact.eta_star:.3f} "
                  f"{b.eta_high / exact.eta_star:.2f} {exact_s:.1f}")
        print(f"# bands for the four B: {band_s:.1f} s, {bands[0].products} products")
    return 0


if __name__ == "__main__":
    sys.exit(main())
