#!/usr/bin/env python3
"""Wu, Ma & E (NeurIPS 2018) replicated end to end (issue #31): the sharpness
and non-uniformity of the minima that GD, SGD and heavy-ball momentum reach on
Fashion-MNIST, beside 2/eta, sqrt(B)/eta and the exact eta*(B) of the library.

Setup (theirs): the first --samples (1000) Fashion-MNIST training images
(Debian dataset-fashion-mnist), pixels / 255, one-hot targets,
torch.nn.MSELoss() (mean over n * 10 entries), a 784-500-500-500-10 ReLU
network with PyTorch's default initialization (torch.manual_seed(seed)),
float32, trained by torch.optim.SGD(lr, momentum) until the training loss is
below --target (1e-5) or --max-steps. SGD draws each step's batch as a
uniform B-subset of the n samples, independently across steps (the library's
"without" scheme, the one eta*(B) is computed for).

Settings: GD at lr in {0.01, 0.05, 0.1, 0.5, 1, 5}; SGD at B in {10, 100,
1000} x lr in {0.05, 0.1, 1}; heavy-ball GD and SGD (B = 10) at lr 0.1 with
momentum in {0, 0.2, 0.4, 0.6, 0.8, 0.9}; --seeds (0, 1, 2) each.

For every final point, in torch's MSELoss units (every number in the table):
sharpness = lambda_max(H), non_uniformity = sqrt(lambda_max((1/n) sum H_i^2
- H^2)), hessian_frobenius = |H|_F, from sgdstab.torch.measures (the
Gauss-Newton Hessian, which is the Hessian at an interpolating minimum; the
trained points have MSE < 1e-5, and the table says how far each is);
2/lr and sqrt(B)/lr; for the --exact settings (seed 0) eta*(B) by
sgdstab.torch.analyze (exact, from the Gram: B = 10, 100, 1000 for plain
SGD; the trained B with momentum) and whether lr <= eta*(B) (with --rho also
rho(T) at lr, which then decides the verdict); with --band the
band eta_low <= eta*(B) <= eta_high at the trained B (sgdstab.torch.band,
matrix-free; with the trained momentum for heavy-ball) and its verdict on lr
(stable below eta_low, unstable above eta_high, else undecided). With
--crosscheck, the first point of each optimizer has its sharpness recomputed
by an independent power iteration on torch's own Hessian-vector product of
the MSELoss (double backward) and on the Gauss-Newton product (J^T J v by
autograd), both reported.

Rows are written to --out (a JSON list, atomically, after each point); a
row already there (same optimizer, lr, batch, momentum, seed) is not
recomputed, so an interrupted run resumes. --svg draws sharpness against lr
(log-log) per B with the 2/lr line. --quick: a small smoke run (50 images,
width 64, three settings, seed 0, 300 steps) that checks its own
cross-checks and exits non-zero when one fails (the band is on there, and
every exact eta* must lie inside its point's certified band, and rho's
verdict must agree with lr against eta*: without momentum rho must decide).

usage: wu_ma_e.py [--out FILE] [--svg FILE] [--seeds 0,1,2] [--only gd,sgd,heavy-ball] [--batches 10,100]
                  [--momenta 0.9] [--max-steps N] [--exact SPEC ...] [--band] [--rho] [--crosscheck] [--quick]
(PYTHONPATH=build/python /usr/bin/python3 examples/wu_ma_e/wu_ma_e.py; scripts/wu_ma_e.sh)
"""
import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "band_from_torch"))
from fashion_mnist_band import cpu, load  # noqa: E402  (the same data loader as issue #29's experiment)

import sgdstab.torch as st  # noqa: E402

GD_LRS = [0.01, 0.05, 0.1, 0.5, 1.0, 5.0]
SGD_BATCHES = [10, 100, 1000]
SGD_LRS = [0.05, 0.1, 1.0]
MOMENTA = [0.0, 0.2, 0.4, 0.6, 0.8, 0.9]
DEFAULT_EXACT = ["sgd:0.1:10:0", "heavy-ball:0.1:10:0.9"]
DEFAULT_OUT = "docs/experiments/wu_ma_e.json"


def network(seed, width):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(784, width), torch.nn.ReLU(), torch.nn.Linear(width, width),
                               torch.nn.ReLU(), torch.nn.Linear(width, width), torch.nn.ReLU(),
                               torch.nn.Linear(width, 10))


def settings(n, only, quick, batches=None, momenta=None):
    """(optimizer, lr, batch, momentum) in the issue's order (batches: keep only these B, n is GD's;
    momenta: keep only these heavy-ball betas)."""
    if quick:
        return [("gd", 0.5, n, 0.0), ("sgd", 0.1, 10, 0.0), ("heavy-ball", 0.1, 10, 0.9)]
    out = [("gd", lr, n, 0.0) for lr in GD_LRS]
    out += [("sgd", lr, b, 0.0) for b in SGD_BATCHES if b <= n for lr in SGD_LRS]
    out += [("heavy-ball", 0.1, b, m) for b in (n, 10) for m in MOMENTA]
    return [s for s in out if s[0] in only and (batches is None or s[2] in batches)
            and (momenta is None or s[0] != "heavy-ball" or s[3] in momenta)]


CONFIG = ("samples", "width", "max_steps", "target")


def key(row):
    """A row's identity: its setting, seed and the run configuration it was trained under."""
    return (row["optimizer"], row["lr"], row["batch"], row["momentum"], row["seed"]) + tuple(row[k] for k in CONFIG)


def train(net, x, y, lr, batch, momentum, seed, max_steps, target):
    """torch.optim.SGD until the full training MSE is below target: (steps, loss, status)."""
    n = x.shape[0]
    mse = torch.nn.MSELoss()
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum)
    g = torch.Generator().manual_seed(10_000 + seed)
    check_every = max(1, n // batch)  # SGD: the full loss once per n samples seen, and at the end
    for step in range(max_steps + 1):
        if batch == n:  # GD: the step's own forward pass gives the loss at this point
            opt.zero_grad()
            full = mse(net(x), y)
            loss = float(full)
        elif step % check_every == 0 or step == max_steps:
            with torch.no_grad():
                loss = float(mse(net(x), y))
        else:
            loss = None
        if loss is not None:
            if not math.isfinite(loss) or loss > 1e6:
                return step, loss, "diverged"
            if loss < target:
                return step, loss, "converged"
        if step == max_steps:
            return step, loss, "budget"
        if batch == n:
            full.backward()
        else:
            idx = torch.randperm(n, generator=g)[:batch]
            opt.zero_grad()
            mse(net(x[idx]), y[idx]).backward()
        opt.step()


def flat_params(model):
    return [p for p in model.parameters() if p.requires_grad]


def power_iteration(product, dim, iterations=3000, tol=1e-12, seed=0):
    """lambda_max of a PSD operator by plain power iteration (Rayleigh quotient), independent of the library."""
    v = torch.randn(dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    v /= v.norm()
    lam = 0.0
    for it in range(1, iterations + 1):
        w = product(v)
        new = float(v @ w)
        v = w / w.norm()
        if it > 10 and abs(new - lam) <= tol * abs(new):
            return new, it, True
        lam = new
    return lam, iterations, False


def sharpness_by_power_iteration(net, x, y):
    """Power iterations in float64 on torch's HVP of the MSELoss and on the Gauss-Newton product J^T J v:
    two (lambda, iterations, converged)."""
    work = __import__("copy").deepcopy(net).double()
    xd, yd = x.double(), y.double()
    params = flat_params(work)
    dim = sum(p.numel() for p in params)

    def unflat(v):
        out, at = [], 0
        for p in params:
            out.append(v[at:at + p.numel()].view_as(p))
            at += p.numel()
        return out

    def hvp(v):
        loss = torch.nn.functional.mse_loss(work(xd), yd)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        hv = torch.autograd.grad(grads, params, grad_outputs=unflat(v))
        return torch.cat([h.reshape(-1) for h in hv])

    def gnvp(v):  # (2 / (n C)) J^T J v: J v by the double-vjp trick, then J^T (J v)
        out = work(xd)
        u = torch.zeros_like(out, requires_grad=True)
        g = torch.autograd.grad(out, params, grad_outputs=u, create_graph=True)
        jv = torch.autograd.grad(g, u, grad_outputs=unflat(v))[0]
        jtjv = torch.autograd.grad(out, params, grad_outputs=jv.detach())
        return torch.cat([t.reshape(-1) for t in jtjv]) * (2.0 / out.numel())

    return power_iteration(hvp, dim), power_iteration(gnvp, dim)


def analyze_point(row, net, x, y, exact, band, rho=False):
    """The library's eta*(B) (exact) and band at the trained point, into row."""
    n, batch, lr, mom = x.shape[0], row["batch"], row["lr"], row["momentum"]
    # The band first: it fits where the exact solve may not (a MemoryError there keeps the band in the row);
    # its own failure is recorded and the exact solve still runs.
    if band:
        t = time.time()
        try:
            p = st.band(net, x, y, batches=[batch], allow_non_minimum=True, momentum=mom).points[0]
        except (ValueError, RuntimeError, MemoryError) as e:
            row["band_error"] = f"{type(e).__name__}: {e}"
            p = None
    if band and p is not None:
        # lr <= eta_low: stable (certified, or with probability >= 1 - delta); lr > eta_high: unstable
        # (certified: above eta*; with momentum, above the first crossing eta*, theory/momentum.md section 5);
        # between the two the band cannot tell.
        verdict = "stable" if lr <= p["eta_low"] else "unstable" if lr > p["eta_high"] else "undecided"
        row["band"] = {"eta_low": p["eta_low"], "eta_high": p["eta_high"], "eta_low_kind": p["eta_low_kind"],
                       "delta": p["delta"], "eta_low_certified": p["eta_low_certified"],
                       "relative_width": p["relative_width"], "subspace_dimension": p["subspace_dimension"],
                       "products": p["products"], "converged": p["converged"], "verdict": verdict,
                       "seconds": time.time() - t}
    if exact:
        t = time.time()
        if mom == 0:
            bs = sorted({b for b in SGD_BATCHES if b <= n} | {batch})
            rep = st.analyze(net, x, y, batches=bs, lr=lr, batch=batch, allow_non_minimum=True, use_gram=True,
                             radius=rho)
        else:
            rep = st.analyze(net, x, y, batches=[batch], lr=lr, batch=batch, momentum=mom, allow_non_minimum=True,
                             use_gram=True, radius=rho)
        pts = {p["batch"]: p for p in rep.points}
        row["eta_star"] = pts[batch]["eta_star"]
        row["eta_star_batches"] = {str(b): p["eta_star"] for b, p in pts.items()}
        row["eta_star_converged"] = rep.converged
        row["stable"] = rep.verdict["stable"]
        row["rho"] = rep.verdict["rho"]
        row["decided_by"] = rep.verdict["decided_by"]
        row["eta_gd"] = rep.eta_gd
        row["max_residual"] = rep.max_residual
        row["exact_seconds"] = time.time() - t


def run_one(spec, seed, x, y, a, exact_specs, crosschecked):
    opt_name, lr, batch, mom = spec
    n = x.shape[0]
    row = {"optimizer": opt_name, "lr": lr, "batch": batch, "momentum": mom, "seed": seed, "samples": n,
           "width": a.width, "max_steps": a.max_steps, "target": a.target}
    net = network(seed, a.width)
    t = time.time()
    steps, loss, status = train(net, x, y, lr, batch, mom, seed, a.max_steps, a.target)
    row.update(steps=steps, loss=loss if math.isfinite(loss) else None, train_status=status,
               train_seconds=time.time() - t)
    row.update(two_over_lr=2.0 / lr, sqrt_batch_over_lr=math.sqrt(batch) / lr, sharpness=None, non_uniformity=None,
               hessian_frobenius=None, eta_star=None)
    if status != "diverged":
        try:
            measure_point(row, net, x, y, a, exact_specs, crosschecked)
        except (ValueError, RuntimeError, MemoryError) as e:  # the library's errors are ValueError/RuntimeError
            row["error"] = f"{type(e).__name__}: {e}"
    row["cpu"] = cpu()
    row["threads"] = torch.get_num_threads()
    return row


def measure_point(row, net, x, y, a, exact_specs, crosschecked):
    """The measures, the cross-check and eta* of a trained point, into row."""
    opt_name, lr, batch, mom, seed = row["optimizer"], row["lr"], row["batch"], row["momentum"], row["seed"]
    net.eval()
    m = st.measures(net, x)
    row.update(sharpness=m.sharpness, non_uniformity=m.non_uniformity, hessian_frobenius=m.hessian_frobenius,
               measures_converged=m.converged, measures_seconds=m.seconds)
    if a.crosscheck and opt_name not in crosschecked:
        t = time.time()
        (lam_h, it_h, ok_h), (lam_gn, it_gn, ok_gn) = sharpness_by_power_iteration(net, x, y)
        row["power_iteration"] = {"hessian": lam_h, "hessian_iterations": it_h, "hessian_converged": ok_h,
                                  "gauss_newton": lam_gn, "gauss_newton_iterations": it_gn,
                                  "gauss_newton_converged": ok_gn, "seconds": time.time() - t}
        crosschecked.add(opt_name)
    if seed == 0 and f"{opt_name}:{lr:g}:{batch}:{mom:g}" in exact_specs:
        analyze_point(row, net, x, y, True, a.band, a.rho)
    elif a.band:
        analyze_point(row, net, x, y, False, True)


def plan_key(item, config):
    (opt_name, lr, batch, mom), seed = item
    return key({"optimizer": opt_name, "lr": lr, "batch": batch, "momentum": mom, "seed": seed, **config})


def write_json(path, rows):
    tmp = path + ".part"
    with open(tmp, "w") as f:
        json.dump(rows, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def svg(path, rows, n):
    """sharpness against lr on log-log axes, per B, with the 2/lr line (plain GD/SGD; heavy-ball apart)."""
    pts = [r for r in rows if r["sharpness"] and r["optimizer"] in ("gd", "sgd")]
    if not pts:
        return
    lrs = [r["lr"] for r in pts]
    ys = [r["sharpness"] for r in pts] + [2.0 / lr for lr in lrs]
    x0, x1 = math.log10(min(lrs) / 2), math.log10(max(lrs) * 2)
    y0, y1 = math.log10(min(ys) / 2), math.log10(max(ys) * 2)
    w, h, m = 640, 440, 60

    def px(v):
        return m + (math.log10(v) - x0) / (x1 - x0) * (w - 2 * m)

    def py(v):
        return h - m - (math.log10(v) - y0) / (y1 - y0) * (h - 2 * m)

    colors = {n: "#1f77b4", 100: "#2ca02c", 10: "#d62728"}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<line x1="{m}" y1="{h - m}" x2="{w - m}" y2="{h - m}" stroke="black"/>',
           f'<line x1="{m}" y1="{m}" x2="{m}" y2="{h - m}" stroke="black"/>']
    for e in range(math.floor(x0), math.ceil(x1) + 1):
        if x0 <= e <= x1:
            out.append(f'<text x="{px(10 ** e):.1f}" y="{h - m + 16}" text-anchor="middle">1e{e}</text>')
    for e in range(math.floor(y0), math.ceil(y1) + 1):
        if y0 <= e <= y1:
            out.append(f'<text x="{m - 6}" y="{py(10 ** e) + 4:.1f}" text-anchor="end">1e{e}</text>')
    a, b = 10 ** x0, 10 ** x1
    out.append(f'<line x1="{px(a):.1f}" y1="{py(2 / a):.1f}" x2="{px(b):.1f}" y2="{py(2 / b):.1f}" '
               'stroke="gray" stroke-dasharray="6,4"/>')
    for r in pts:
        c = colors.get(r["batch"], "#9467bd")
        out.append(f'<circle cx="{px(r["lr"]):.1f}" cy="{py(r["sharpness"]):.1f}" r="4" fill="none" stroke="{c}"/>')
    legend = [(f"GD (B = {n})", colors[n]), ("SGD B = 100", colors[100]), ("SGD B = 10", colors[10]),
              ("2 / lr", "gray")]
    for i, (label, c) in enumerate(legend):
        out.append(f'<text x="{w - m - 120}" y="{m + 16 * i}" fill="{c}">{label}</text>')
    out.append(f'<text x="{w / 2}" y="{h - 16}" text-anchor="middle">learning rate (MSELoss units)</text>')
    out.append(f'<text x="16" y="{h / 2}" transform="rotate(-90 16 {h / 2})" text-anchor="middle">'
               'sharpness lambda_max(H)</text>')
    out.append("</svg>")
    tmp = path + ".part"
    with open(tmp, "w") as f:
        f.write("\n".join(out) + "\n")
    os.replace(tmp, path)


def summary(rows):
    """Mean and spread over seeds per setting."""
    groups = {}
    for r in rows:
        groups.setdefault((r["optimizer"], r["lr"], r["batch"], r["momentum"]), []).append(r)
    print(f"{'optimizer':>10} {'lr':>5} {'B':>5} {'beta':>4} {'seeds':>5} {'steps':>7} {'loss':>8} "
          f"{'sharpness':>17} {'2/lr':>6} {'non-unif.':>17} {'sqrtB/lr':>8} {'|H|_F':>8} {'eta*':>8}")
    for (o, lr, b, mom), rs in groups.items():
        def ms(field):
            v = [r[field] for r in rs if r.get(field) is not None]
            if not v:
                return "-"
            mean = sum(v) / len(v)
            sd = math.sqrt(sum((t - mean) ** 2 for t in v) / (len(v) - 1)) if len(v) > 1 else 0.0
            return f"{mean:.4g} +- {sd:.2g}"
        eta = [r["eta_star"] for r in rs if r.get("eta_star") is not None]
        fro = [r["hessian_frobenius"] for r in rs if r.get("hessian_frobenius") is not None]
        losses = [r["loss"] if r["loss"] is not None else math.inf for r in rs]
        print(f"{o:>10} {lr:>5g} {b:>5} {mom:>4g} {len(rs):>5} {max(r['steps'] for r in rs):>7} "
              f"{max(losses):>8.2g} {ms('sharpness'):>17} {2 / lr:>6.3g} "
              f"{ms('non_uniformity'):>17} {math.sqrt(b) / lr:>8.3g} "
              f"{(sum(fro) / len(fro) if fro else float('nan')):>8.4g} "
              f"{(f'{eta[0]:.4g}' if eta else '-'):>8}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--width", type=int, default=500)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--only", default="gd,sgd,heavy-ball", help="optimizers to run (comma-separated)")
    ap.add_argument("--batches", default="", help="run only the settings with these B (comma-separated; n = GD)")
    ap.add_argument("--momenta", default="", help="run only the heavy-ball settings with these betas (comma-separated)")
    ap.add_argument("--max-steps", type=int, default=10000)
    ap.add_argument("--target", type=float, default=1e-5, help="stop when the training MSE is below this")
    ap.add_argument("--exact", nargs="*", default=None,
                    help="OPTIMIZER:LR:B:MOMENTUM settings (seed 0) whose exact eta*(B) is computed "
                         f"(default {' '.join(DEFAULT_EXACT)}; none: --exact with no value)")
    ap.add_argument("--band", action="store_true", help="the band for eta*(B) at every point (with its momentum)")
    ap.add_argument("--rho", action="store_true",
                    help="with --exact: also rho(T) at the trained lr, which decides the verdict (else lr <= eta*); "
                         "costly at a stable point of a large network, where T's top eigenvalues cluster below 1")
    ap.add_argument("--crosscheck", action="store_true",
                    help="power iterations on torch's own products for the first point of each optimizer")
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--svg", default="", help="the picture (default: --out with .svg)")
    ap.add_argument("--quick", action="store_true", help="a small smoke run that checks itself")
    a = ap.parse_args()
    if a.quick:
        a.samples, a.width, a.seeds, a.max_steps, a.crosscheck, a.band, a.rho = 50, 64, "0", 300, True, True, True
        if a.exact is None:
            a.exact = ["gd:0.5:50:0", "heavy-ball:0.1:10:0.9"]
        if a.out == DEFAULT_OUT:  # never over the committed table
            a.out = os.path.join(tempfile.gettempdir(), "wu_ma_e_quick.json")
    exact_specs = set(DEFAULT_EXACT if a.exact is None else a.exact)
    torch.set_num_threads(1 if a.quick else (os.cpu_count() or 1))  # quick: beside other tests (ctest -j)
    x, labels = load(a.samples)
    y = torch.nn.functional.one_hot(labels, 10).float()
    seeds = [int(s) for s in a.seeds.split(",")]
    only = set(a.only.split(","))
    batches = {int(b) for b in a.batches.split(",")} if a.batches else None
    momenta = {float(m) for m in a.momenta.split(",")} if a.momenta else None
    plan = [(s, seed) for s in settings(a.samples, only, a.quick, batches, momenta) for seed in seeds]
    rows = []
    if os.path.exists(a.out) and not a.quick:
        with open(a.out) as f:
            rows = json.load(f)
    config = {"samples": a.samples, "width": a.width, "max_steps": a.max_steps, "target": a.target}
    done = {key(r) for r in rows if all(k in r for k in CONFIG)}
    print(f"Wu-Ma-E on Fashion-MNIST: n = {a.samples}, 784-{a.width}x3-10 ReLU, {len(plan)} runs "
          f"({len([p for p in plan if plan_key(p, config) in done])} already in {a.out}); CPU: {cpu()}, "
          f"{torch.get_num_threads()} threads", flush=True)
    start = time.time()
    crosschecked = {r["optimizer"] for r in rows if "power_iteration" in r}
    for spec, seed in plan:
        if plan_key((spec, seed), config) in done:
            continue
        row = run_one(spec, seed, x, y, a, exact_specs, crosschecked)
        rows.append(row)
        write_json(a.out, rows)
        extra = ""
        if row.get("eta_star") is not None:
            extra = f", eta*({row['batch']}) = {row['eta_star']:.4g} ({'stable' if row['stable'] else 'unstable'})"
        if "power_iteration" in row:
            pi = row["power_iteration"]
            extra += f", power iteration: Hessian {pi['hessian']:.6g}, Gauss-Newton {pi['gauss_newton']:.6g}"
        if "band" in row:
            bd = row["band"]
            extra += f", band [{bd['eta_low']:.4g}, {bd['eta_high']:.4g}] ({bd['verdict']})"
        sharp = "-" if row["sharpness"] is None else f"{row['sharpness']:.4g}"
        print(f"  {spec[0]:>10} lr {spec[1]:g} B {spec[2]} beta {spec[3]:g} seed {seed}: {row['train_status']} "
              f"after {row['steps']} steps (MSE {row['loss']:.2g}, {row['train_seconds']:.0f} s), "
              f"sharpness {sharp} (2/lr {2 / spec[1]:.3g}){extra}", flush=True)
    print(f"done in {time.time() - start:.0f} s")
    summary(rows)
    svg(a.svg or os.path.splitext(a.out)[0] + ".svg", rows, a.samples)
    if a.quick:
        check(rows, exact_specs)


def check(rows, exact_specs):
    """--quick: the cross-checks must hold (the smoke test's assertions)."""
    failures = []
    for r in rows:
        if r["train_status"] == "diverged" or r["sharpness"] is None or not r.get("measures_converged"):
            failures.append(f"{key(r)}: no converged measures ({r['train_status']})")
            continue
        pi = r.get("power_iteration")
        if pi is None:
            failures.append(f"{key(r)}: no power iteration")
        elif not pi["gauss_newton_converged"]:
            failures.append(f"{key(r)}: the Gauss-Newton power iteration did not converge")
        elif abs(pi["gauss_newton"] - r["sharpness"]) > 1e-6 * r["sharpness"]:
            failures.append(f"{key(r)}: sharpness {r['sharpness']} vs Gauss-Newton power iteration {pi['gauss_newton']}")
        if f"{r['optimizer']}:{r['lr']:g}:{r['batch']}:{r['momentum']:g}" in exact_specs and r.get("eta_star") is None:
            failures.append(f"{key(r)}: no eta* ({r.get('error', 'not computed')})")
        if r.get("eta_star") is not None and r["momentum"] == 0 and r.get("decided_by") != "rho":
            # (with momentum the radius at a stable point may not converge: the verdict is then eta*'s)
            failures.append(f"{key(r)}: the verdict is not rho's ({r.get('decided_by')}): nothing to cross-check")
        if r.get("eta_star") is not None and (r["stable"] != (r["lr"] <= r["eta_star"]) or not r["eta_star_converged"]):
            failures.append(f"{key(r)}: verdict {r['stable']} disagrees with lr {r['lr']} vs eta* {r['eta_star']}")
        bd = r.get("band")
        if bd is None:
            failures.append(f"{key(r)}: no band")
        elif r.get("eta_star") is not None and not (bd["eta_low_certified"] * (1 - 1e-9) <= r["eta_star"]
                                                    <= bd["eta_high"] * (1 + 1e-9)):
            failures.append(f"{key(r)}: eta* {r['eta_star']} outside the certified band "
                            f"[{bd['eta_low_certified']}, {bd['eta_high']}]")
        if r["non_uniformity"] is None or r["non_uniformity"] < 0 or r["hessian_frobenius"] < r["sharpness"]:
            failures.append(f"{key(r)}: impossible measures")
    for f in failures:
        print("CHECK FAILED:", f)
    if failures:
        sys.exit(1)
    print(f"quick check: {len(rows)} points, every cross-check holds")


if __name__ == "__main__":
    main()
