#!/usr/bin/env python3
"""Train a small MLP with torch.optim.SGD to an interpolating minimum, then ask
sgdstab at which learning rates SGD would stay there.

    PYTHONPATH=build/python python3 examples/python/train_mlp.py [--lr 0.1] [--batch 4]

Prints eta*(B) for every batch size (in the units of MSELoss(reduction="mean"),
the loss trained with) beside the learning rate used, and the verdict at the
training point (lr, batch). SGD can only settle at minima where lr <= eta*(batch):
the minimum it found must say "stable".
"""
import argparse
import time

import torch

import sgdstab
import sgdstab.torch as st


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--outputs", type=int, default=3)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=60000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    torch.set_default_dtype(torch.float64)  # interpolation to 1e-8 needs double precision
    n, d, c = args.samples, 3, args.outputs
    x = torch.randn(n, d)
    y = torch.randn(n, c)
    model = torch.nn.Sequential(torch.nn.Linear(d, args.width), torch.nn.Tanh(), torch.nn.Linear(args.width, c))
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)
    loss_fn = torch.nn.MSELoss(reduction="mean")
    t0 = time.time()
    for step in range(args.steps):
        idx = torch.randperm(n)[:args.batch]  # without replacement, independent across steps
        opt.zero_grad()
        loss_fn(model(x[idx]), y[idx]).backward()
        opt.step()
        if step % 1000 == 999:
            with torch.no_grad():
                full = loss_fn(model(x), y).item()
            if full < 1e-20:
                break
    with torch.no_grad():
        full = loss_fn(model(x), y).item()
    print(f"trained {step + 1} SGD steps (lr {args.lr}, batch {args.batch}) in {time.time() - t0:.1f} s: "
          f"training MSE {full:.2e}")

    rep = st.analyze(model, x, y, lr=args.lr, batch=args.batch, residual_tolerance=1e-6)
    print(f"n = {rep.samples}, C = {rep.outputs}, p = {rep.params}, rank H = {rep.rank}; "
          f"loss {rep.loss}: eta = {rep.lr_factor:g} x sgdstab's")
    print(f"full-batch limit 2/lambda_max = {rep.eta_gd:.6g}")
    print(" batch    eta*(B)   lr used")
    for pt in rep.points:
        mark = "  <- trained here" if pt["batch"] == args.batch else ""
        print(f"{pt['batch']:6d}  {pt['eta_star']:9.6g}  {args.lr:8.4g}{mark}")
    v = rep.verdict
    print(f"at (lr {v['lr']}, batch {v['batch']}): rho = {v['rho']:.6f}, "
          f"{'stable' if v['stable'] else 'UNSTABLE'} (eta*({v['batch']}) = {v['eta_star']:.6g})")
    return 0 if v["stable"] and rep.converged else 1


if __name__ == "__main__":
    raise SystemExit(main())
