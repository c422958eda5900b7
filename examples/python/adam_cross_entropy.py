#!/usr/bin/env python3
"""Adam and cross-entropy on Fashion-MNIST classes: the exact threshold at the
end of training beside the learning rate used, and the full-batch check of
Cohen et al. (2022)'s 38/lr plateau (issue #30, item 6; docs/experiments.md).

    PYTHONPATH=build/python python3 examples/python/adam_cross_entropy.py [--quick]

Part 1 trains a small MLP with torch.optim.Adam(lr) on mini-batches of B
with CrossEntropyLoss until every training sample is classified with
probability >= 0.99, then asks sgdstab.torch.analyze(loss="cross_entropy",
optimizer=opt) for eta*(B) of Adam with the optimizer's second-moment state
frozen (theory/adaptive.md, theory/loss_curvature.md), in torch's lr.

Part 1b does the same with torch.optim.AdamW at each of --adamw-weight-decays
(its decoupled decay, theory/adaptive.md section 5) and compares with the
same point and state analyzed without the decay.

Part 2 trains the same model with full-batch Adam and records, every few
steps, the full-batch threshold eta*(n) = (2 + 2 beta1) / ((1 - beta1)
lambda_1(P^{-1} G)) at the current point and state (G the Gauss-Newton
Hessian): Cohen et al. observed lambda_1(P^{-1} H) rising to 38/lr and
hovering there, i.e. lr / eta*(n) rising to ~1.

Data: the Debian package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist),
images average-pooled 2x2 to 14x14 and scaled to [0, 1].
"""
import argparse
import gzip
import os
import time

import numpy as np
import torch

import sgdstab.torch as st

DATA = "/usr/share/datasets/fashion-mnist"


def load(classes, per_class, data_dir):
    with gzip.open(os.path.join(data_dir, "train-images-idx3-ubyte.gz")) as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(os.path.join(data_dir, "train-labels-idx1-ubyte.gz")) as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    xs, ys = [], []
    for k, cls in enumerate(classes):
        idx = np.flatnonzero(labels == cls)[:per_class]
        xs.append(images[idx].reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4)).reshape(len(idx), -1) / 255.0)
        ys.append(np.full(len(idx), k))
    return torch.tensor(np.concatenate(xs)), torch.tensor(np.concatenate(ys))


def mlp(d, width, c, seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(d, width), torch.nn.Tanh(), torch.nn.Linear(width, c)).double()


def train_to_fit(x, y, args, loss_fn, make_optimizer):
    """Mini-batch training from the seeded initial model until every sample has p(true class) >= 0.99:
    (model, optimizer, steps, loss, min p(true class), seconds)."""
    n, c = x.shape[0], int(y.max()) + 1
    model = mlp(x.shape[1], args.width, c, args.seed)
    opt = make_optimizer(model)
    gen = torch.Generator().manual_seed(args.seed)
    t0, step = time.time(), 0
    while True:
        for idx in torch.randperm(n, generator=gen).split(args.batch):
            opt.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
            step += 1
        with torch.no_grad():
            p_true = torch.softmax(model(x), dim=1)[torch.arange(n), y]
        if p_true.min() >= 0.99 or step >= 200000:
            break
    with torch.no_grad():
        loss = loss_fn(model(x), y).item()
    return model, opt, step, loss, p_true.min().item(), time.time() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", default="0,1,2")
    ap.add_argument("--per-class", type=int, default=64)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--adamw-weight-decays", default="0.01,1.0",
                    help="part 1b: AdamW runs with these weight decays (torch's default is 0.01; empty: none)")
    ap.add_argument("--full-batch-lr", type=float, default=2e-3)
    ap.add_argument("--full-batch-steps", type=int, default=3000)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--full-batch-loss", choices=["cross_entropy", "mse"], default="mse",
                    help="part 2's loss: mse (one-hot targets, MSELoss(mean); Cohen et al.'s plateau shows there) or "
                         "cross_entropy (on these separable classes its curvature vanishes as the loss does)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=DATA)
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    args = ap.parse_args()
    if args.quick:
        args.per_class, args.width, args.full_batch_steps, args.every = 16, 8, 300, 100
        args.adamw_weight_decays = "0.01"
    classes = [int(c) for c in args.classes.split(",")]
    x, y = load(classes, args.per_class, args.data_dir)
    n, c = x.shape[0], len(classes)
    loss_fn = torch.nn.CrossEntropyLoss(reduction="mean")
    print(f"Fashion-MNIST classes {classes}, n = {n}, 14x14 inputs, MLP {x.shape[1]}-{args.width}-{c} (tanh)")

    # Part 1: mini-batch Adam to a confident fit, then eta*(B) at the point reached.
    model, opt, step, loss, p_min, secs = train_to_fit(x, y, args, loss_fn, lambda m: torch.optim.Adam(
        m.parameters(), lr=args.lr))
    print(f"\nPart 1: Adam(lr={args.lr}) on batches of {args.batch}: {step} steps, {secs:.1f} s, "
          f"loss {loss:.3g}, min p(true class) {p_min:.4f}")
    batches = sorted({1, 4, args.batch, n})
    t0 = time.time()
    # No verdict (batch=): at lr far below eta* the radius of Adam's map has clustered eigenvalues near 1 and
    # its Arnoldi solve is slow to converge; the threshold decides the verdict (stable iff lr <= eta*).
    rep = st.analyze(model, x, y, batches=batches, loss="cross_entropy", optimizer=opt)
    print(f"analyze: {time.time() - t0:.1f} s, rank {rep.rank}, preconditioned sharpness "
          f"lambda_1(P^-1 G) = {rep.lambda_max:.4g}, bias correction {rep.bias_correction1:.6f}")
    print("  B     eta*(B) of Adam (torch lr)")
    for p in rep.points:
        print(f"  {p['batch']:<5d} {p['eta_star']:.4g}{'  <- trained at' if p['batch'] == args.batch else ''}")
    at = next(p for p in rep.points if p["batch"] == args.batch)
    print(f"at lr {args.lr}, B {args.batch}: lr / eta*(B) = {args.lr / at['eta_star']:.3g} "
          f"({'stable' if args.lr <= at['eta_star'] else 'unstable'}; converged: {rep.converged})")

    # Part 1b: AdamW with its decoupled weight decay (theory/adaptive.md, section 5), same start and data.
    for wd in [float(v) for v in args.adamw_weight_decays.split(",") if v]:
        model, opt, step, loss, p_min, secs = train_to_fit(x, y, args, loss_fn, lambda m: torch.optim.AdamW(
            m.parameters(), lr=args.lr, weight_decay=wd))
        rep_w = st.analyze(model, x, y, batches=batches, loss="cross_entropy", optimizer=opt)
        print(f"\nPart 1b: AdamW(lr={args.lr}, weight_decay={wd}): {step} steps, {secs:.1f} s, loss {loss:.3g}; "
              f"lambda_1(P^-1 G) = {rep_w.lambda_max:.4g}, lr wd = {args.lr * wd:.2g} per step")
        print("  B     eta*(B) of AdamW (torch lr)")
        for p in rep_w.points:
            print(f"  {p['batch']:<5d} {p['eta_star']:.4g}")
        # The decay's own share: the same point and state analyzed as Adam (weight_decay 0).
        plain = torch.optim.Adam(model.parameters(), lr=args.lr)
        plain.load_state_dict({"state": opt.state_dict()["state"], "param_groups": [
            dict(opt.state_dict()["param_groups"][0], weight_decay=0.0)]})
        rep_0 = st.analyze(model, x, y, batches=batches, loss="cross_entropy", optimizer=plain)
        print("  same point and state without the decay: " + ", ".join(
            f"B {a['batch']}: {b['eta_star'] / a['eta_star'] - 1:+.2%}" for a, b in zip(rep_0.points, rep_w.points)))

    # Part 2: full-batch Adam, lr / eta*(n) along training (Cohen et al.: rises to ~1 and hovers).
    model = mlp(x.shape[1], args.width, c, args.seed)
    opt = torch.optim.Adam(model.parameters(), lr=args.full_batch_lr)
    mse = args.full_batch_loss == "mse"
    target = torch.nn.functional.one_hot(y, c).double() if mse else y
    part2_loss = torch.nn.MSELoss(reduction="mean") if mse else loss_fn
    print(f"\nPart 2: full-batch Adam(lr={args.full_batch_lr}), beta1 = 0.9, {args.full_batch_loss}: lr / eta*(n) "
          f"with eta*(n) = 38 / lambda_1(P^-1 G)")
    print("  step   loss        lr/eta*(n)")
    t0 = time.time()
    for t in range(1, args.full_batch_steps + 1):
        opt.zero_grad()
        loss = part2_loss(model(x), target)
        loss.backward()
        opt.step()
        if t % args.every == 0:
            if mse:  # not a minimum while training: the Gauss-Newton part (allow_non_minimum)
                r = st.analyze(model, x, target, batches=[n], loss="mse_mean", optimizer=opt,
                               allow_non_minimum=True)
            else:
                r = st.analyze(model, x, y, batches=[n], loss="cross_entropy", optimizer=opt)
            print(f"  {t:<6d} {loss.item():<11.4g} {args.full_batch_lr / r.points[0]['eta_star']:.3f}")
    print(f"({time.time() - t0:.1f} s)")


if __name__ == "__main__":
    main()
