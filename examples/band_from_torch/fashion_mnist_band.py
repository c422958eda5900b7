#!/usr/bin/env python3
"""Issue 29's experiment: the band for eta*(B) of the Wu-Ma-E network
(784-500-500-500-10, ReLU, biases) trained by torch.optim.SGD to
(near-)interpolation on n Fashion-MNIST images, next to the learning rate it
was trained with, 2/lambda_max(H) (the band at B = n, full batch) and, on a
subset of the same network's training set, the exact eta*(B).

Data: the Debian package dataset-fashion-mnist (scripts/install_deps.sh data),
the first n training images, pixels in [0, 1], one-hot targets.
Training: torch.nn.MSELoss (mean over n*C entries), torch.optim.SGD at --lr
(those units) and --train-batch, float32, until the training MSE is below
--target-mse or --epochs run out; the trained network is then analyzed in
float64 (a copy). Every learning rate printed is in torch's MSELoss units
(loss="mse_mean"; the library's own is C/2 = 5 times smaller).

SGD leaves residuals of ~1e-3, not 0: the point is analyzed with
allow_non_minimum=True, i.e. the Gauss-Newton linearization (H = J^T J / n)
that the library's theory is about; the maximal residual is printed.

usage: fashion_mnist_band.py [--samples N] [--batches 10,100,1000]
         [--subset M] [--lr LR] [--train-batch B] [--epochs E] [--json FILE]
         [--checkpoint FILE] [--train-only] [--subset-only] [--momentum BETA]
(PYTHONPATH=build/python /usr/bin/python3 examples/band_from_torch/fashion_mnist_band.py)
"""
import argparse
import gzip
import json
import os
import platform
import resource
import time

import numpy as np
import torch

import sgdstab.torch as st

DATA = "/usr/share/datasets/fashion-mnist"


def load(n):
    """The first n training images (n x 784, [0, 1]) and their labels."""
    def read(name, offset):
        path = os.path.join(DATA, name)
        if not os.path.exists(path):
            raise SystemExit(f"{path} is missing: install it with 'bash scripts/install_deps.sh data'")
        with gzip.open(path, "rb") as f:
            return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)
    images = read("train-images-idx3-ubyte.gz", 16).reshape(-1, 784)
    labels = read("train-labels-idx1-ubyte.gz", 8)
    if n > images.shape[0]:
        raise SystemExit(f"--samples {n}: the training set has {images.shape[0]} images")
    return torch.tensor(images[:n] / 255.0, dtype=torch.float32), torch.tensor(labels[:n], dtype=torch.int64)


def network():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(784, 500), torch.nn.ReLU(), torch.nn.Linear(500, 500),
                               torch.nn.ReLU(), torch.nn.Linear(500, 500), torch.nn.ReLU(),
                               torch.nn.Linear(500, 10))


def train(net, x, y, lr, batch, epochs, target):
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    mse = torch.nn.MSELoss()
    g = torch.Generator().manual_seed(1)
    n = x.shape[0]
    for epoch in range(1, epochs + 1):
        for idx in torch.randperm(n, generator=g).split(batch):
            opt.zero_grad()
            mse(net(x[idx]), y[idx]).backward()
            opt.step()
        with torch.no_grad():
            loss = float(mse(net(x), y))
        if epoch % 10 == 0 or loss < target:
            print(f"  epoch {epoch}: training MSE {loss:.3g}", flush=True)
        if loss < target:
            return epoch, loss
    return epochs, loss


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=10000)
    ap.add_argument("--batches", default="10,100,1000")
    ap.add_argument("--subset", type=int, default=100, help="samples of the exact comparison (0: none)")
    ap.add_argument("--lr", type=float, default=0.5)
    ap.add_argument("--train-batch", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=400)
    ap.add_argument("--target-mse", type=float, default=1e-5)
    ap.add_argument("--subspace", type=int, default=64)
    ap.add_argument("--lanczos", type=int, default=40)
    ap.add_argument("--momentum", type=float, default=0.0,
                    help="the band (and the exact eta*) of torch.optim.SGD(momentum=BETA) (0: plain SGD)")
    ap.add_argument("--json", default="", help="write every figure to this file")
    ap.add_argument("--checkpoint", default="",
                    help="the trained network's state: loaded when the file exists (no training), else written "
                         "after training")
    ap.add_argument("--train-only", action="store_true", help="stop after training (and --checkpoint)")
    ap.add_argument("--subset-only", action="store_true",
                    help="skip the band on all --samples; only the --subset comparison (band and exact)")
    a = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    x, labels = load(a.samples)
    y = torch.nn.functional.one_hot(labels, 10).float()
    net = network()
    print(f"Fashion-MNIST: n = {a.samples}, 784-500-500-500-10 ReLU, "
          f"p = {sum(t.numel() for t in net.parameters())}; CPU: {cpu()}, {torch.get_num_threads()} threads")
    t = time.time()
    if a.checkpoint and os.path.exists(a.checkpoint):
        saved = torch.load(a.checkpoint)
        if saved.get("samples") != a.samples or saved.get("lr") != a.lr or saved.get("train_batch") != a.train_batch:
            raise SystemExit(f"{a.checkpoint}: trained with --samples {saved.get('samples')} --lr {saved.get('lr')} "
                             f"--train-batch {saved.get('train_batch')}, not with this run's; remove it or match them")
        net.load_state_dict(saved["state"])
        epochs, train_s = saved["epochs"], saved["seconds"]
        with torch.no_grad():
            mse = float(torch.nn.MSELoss()(net(x), y))
        print(f"loaded {a.checkpoint} (trained for {epochs} epochs in {train_s:.0f} s)")
    else:
        epochs, mse = train(net, x, y, a.lr, a.train_batch, a.epochs, a.target_mse)
        train_s = time.time() - t
        if a.checkpoint:
            torch.save({"state": net.state_dict(), "epochs": epochs, "seconds": train_s, "samples": a.samples,
                        "lr": a.lr, "train_batch": a.train_batch}, a.checkpoint + ".part")
            os.replace(a.checkpoint + ".part", a.checkpoint)
    print(f"trained: torch.optim.SGD lr {a.lr}, batch {a.train_batch}, {epochs} epochs, MSE {mse:.3g} ({train_s:.0f} s)")
    if a.train_only:
        return
    net.eval()
    batches = sorted({int(b) for b in a.batches.split(",")} | {a.samples})
    out = {"cpu": cpu(), "threads": torch.get_num_threads(), "samples": a.samples, "momentum": a.momentum,
           "params": sum(t.numel() for t in net.parameters()),
           "train": {"lr": a.lr, "batch": a.train_batch, "epochs": epochs, "mse": mse, "seconds": train_s}}
    if not a.subset_only:
        t = time.time()
        rep = st.band(net, x, y, batches=batches, loss="mse_mean", allow_non_minimum=True, subspace=a.subspace,
                      lanczos_steps=a.lanczos, momentum=a.momentum)
        band_s = time.time() - t
        print(f"band at n = {a.samples} (nC = {10 * a.samples}), max residual {rep.max_residual:.2g}, "
              f"{rep.products} products, {band_s:.0f} s, peak memory {peak_gb():.2f} GB")
        for p in rep.points:
            note = " (full batch: 2/lambda_max(H))" if p["batch"] == a.samples else ""
            train_mark = "   <- trained here" if p["batch"] == a.train_batch else ""
            print(f"  B = {p['batch']:6d}: {p['eta_low']:.4g} ({p['eta_low_kind']}) <= eta* <= {p['eta_high']:.4g}, "
                  f"width {p['relative_width']:.3f}{note}{train_mark}")
        out["band"] = {"points": rep.points, "products": rep.products, "seconds": band_s,
                       "max_residual": rep.max_residual, "peak_memory_gb": peak_gb()}
    if a.subset:
        xs, ys = x[:a.subset], y[:a.subset]
        sb = sorted({b for b in batches if b <= a.subset} | {a.subset})
        t = time.time()
        sub = st.band(net, xs, ys, batches=sb, loss="mse_mean", allow_non_minimum=True, subspace=a.subspace,
                      lanczos_steps=a.lanczos, momentum=a.momentum)
        sub_s = time.time() - t
        t = time.time()
        ex = st.analyze(net, xs, ys, batches=sb, loss="mse_mean", allow_non_minimum=True, use_gram=True,
                        momentum=a.momentum if a.momentum > 0 else None)
        ex_s = time.time() - t
        print(f"subset n = {a.subset} (nC = {10 * a.subset}): band {sub_s:.0f} s, exact {ex_s:.0f} s, "
              f"peak memory {peak_gb():.2f} GB")
        exact = {p["batch"]: p["eta_star"] for p in ex.points}
        for p in sub.points:
            e = exact[p["batch"]]
            inside = p["eta_low"] <= e * (1 + 1e-9) and e <= p["eta_high"] * (1 + 1e-9)
            print(f"  B = {p['batch']:6d}: {p['eta_low']:.4g} <= {e:.4g} (exact) <= {p['eta_high']:.4g}: "
                  f"{'inside' if inside else 'OUTSIDE THE BAND'}; subspace {p['subspace_dimension']} "
                  f"({p['subspace_doublings']} doubling{'' if p['subspace_doublings'] == 1 else 's'})")
        out["subset"] = {"samples": a.subset, "band": sub.points, "band_seconds": sub_s, "exact": exact,
                         "exact_seconds": ex_s, "peak_memory_gb": peak_gb()}
    if a.json:
        tmp = a.json + ".part"
        with open(tmp, "w") as f:
            json.dump(out, f, indent=1, default=float)
        os.replace(tmp, a.json)


def cpu():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def peak_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


if __name__ == "__main__":
    main()
