#!/usr/bin/env python3
"""The certified band of a ReLU network at an interpolating minimum, from
Jacobian products only (sgdstab.torch.band), next to the exact eta*(B) when
asked (sgdstab.torch.analyze through the Gram).

The network: 784-H-10 ReLU, random inputs in [0, 1)^784 and one-hot targets
for n samples; the last layer is fitted exactly (pinv of the features, H >= n),
so the parameters are an interpolating minimum of the square loss. Learning
rates in the library's convention (1/2, mean over samples).

usage: band_mlp.py [--samples N] [--hidden H] [--subspace M] [--lanczos K]
                   [--batches 1,10,100] [--exact]
(run with PYTHONPATH pointing at the built or installed package, e.g.
 PYTHONPATH=build/python /usr/bin/python3 examples/band_from_torch/band_mlp.py)
"""
import argparse
import time

import torch

import sgdstab.torch as st


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--hidden", type=int, default=200)
    ap.add_argument("--subspace", type=int, default=32)
    ap.add_argument("--lanczos", type=int, default=40)
    ap.add_argument("--batches", default="1,10,100")
    ap.add_argument("--exact", action="store_true", help="also the exact eta*(B) (forms the Gram: nC <= ~5000)")
    a = ap.parse_args()
    if a.hidden < a.samples:
        ap.error("--hidden must be >= --samples (the last layer is fitted exactly)")
    torch.manual_seed(0)
    n, d, c = a.samples, 784, 10
    x = torch.rand(n, d, dtype=torch.float64)
    y = torch.nn.functional.one_hot(torch.randint(0, c, (n,)), c).double()
    net = torch.nn.Sequential(torch.nn.Linear(d, a.hidden), torch.nn.ReLU(),
                              torch.nn.Linear(a.hidden, c, bias=False)).double()
    with torch.no_grad():
        net[2].weight.copy_((torch.linalg.pinv(net[1](net[0](x))) @ y).T)
    batches = [int(b) for b in a.batches.split(",")]
    t = time.time()
    rep = st.band(net, x, y, batches=batches, loss="sgdstab", subspace=a.subspace, lanczos_steps=a.lanczos)
    seconds = time.time() - t
    print(f"n = {n}, C = {c}, p = {rep.params}, max residual {rep.max_residual:.2g}")
    for p in rep.points:
        print(f"B = {p['batch']:5d}: {p['eta_low']:.5g} ({p['eta_low_kind']}; certified {p['eta_low_certified']:.3g})"
              f" <= eta* <= {p['eta_high']:.5g}, relative width {p['relative_width']:.3f}")
    print(f"band: {seconds:.1f} s, {rep.products} products")
    if a.exact:
        t = time.time()
        ex = st.analyze(net, x, y, batches=batches, loss="sgdstab", use_gram=True)
        print("exact eta*: " + ", ".join(f"B = {p['batch']}: {p['eta_star']:.5g}" for p in ex.points) +
              f" ({time.time() - t:.1f} s)")


if __name__ == "__main__":
    main()
