#!/usr/bin/env python3
"""eta*(B) of SGD with momentum at one minimum, for several beta, heavy-ball and
Nesterov, beside the full-batch limits; a table on stdout and an SVG picture.

    PYTHONPATH=build/python python3 examples/python/momentum_region.py GRAM.npy OUTPUTS [--svg FILE]

Used by scripts/momentum_experiment.sh (docs/momentum.md, "Experiment").
"""
import argparse
import math
import time

import sgdstab


def svg(curves, eta_gd, path, title):
    """Log-log picture: eta against B, one curve per (beta, variant); stable below each."""
    w, h, m = 720, 480, 70
    bs = sorted({b for c in curves for b in c["batches"]})
    etas = [e for c in curves for e in c["eta_star"]] + [c["eta_mean"] for c in curves]
    x0, x1 = math.log(bs[0]), math.log(bs[-1])
    y0, y1 = math.log(min(etas) / 1.5), math.log(max(etas) * 1.5)
    px = lambda b: m + (w - 2 * m) * (math.log(b) - x0) / (x1 - x0)
    py = lambda e: h - m - (h - 2 * m) * (math.log(e) - y0) / (y1 - y0)
    colors = {0.0: "#000000", 0.5: "#1f77b4", 0.9: "#d62728", 0.99: "#2ca02c"}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>',
           f'<line x1="{m}" y1="{h - m}" x2="{w - m}" y2="{h - m}" stroke="black"/>',
           f'<line x1="{m}" y1="{m}" x2="{m}" y2="{h - m}" stroke="black"/>',
           f'<text x="{w / 2}" y="{h - 25}" text-anchor="middle">batch size B (log)</text>',
           f'<text x="18" y="{h / 2}" transform="rotate(-90 18 {h / 2})" text-anchor="middle">learning rate (log)</text>']
    for b in bs:
        out.append(f'<text x="{px(b):.1f}" y="{h - m + 16}" text-anchor="middle">{b}</text>')
    for k in range(int(math.floor(y0 / math.log(10))), int(math.ceil(y1 / math.log(10))) + 1):
        e = 10.0 ** k
        if y0 <= math.log(e) <= y1:
            out.append(f'<text x="{m - 6}" y="{py(e) + 4:.1f}" text-anchor="end">1e{k}</text>')
    # The legend in the lower right, where the curves leave room (small lr, large B).
    legend_x, legend_y = w - m - 175, h - m - 18 * len(curves) - 10
    out.append(f'<rect x="{legend_x - 8}" y="{legend_y - 12}" width="180" height="{18 * len(curves) + 6}" '
               f'fill="white" stroke="#cccccc"/>')
    for c in curves:
        col = colors.get(c["momentum"], "#888888")
        dash = ' stroke-dasharray="6,4"' if c["nesterov"] else ""
        pts = " ".join(f"{px(b):.1f},{py(e):.1f}" for b, e in zip(c["batches"], c["eta_star"]))
        out.append(f'<polyline points="{pts}" fill="none" stroke="{col}" stroke-width="2"{dash}/>')
        out.append(f'<line x1="{px(bs[0]):.1f}" y1="{py(c["eta_mean"]):.1f}" x2="{px(bs[-1]):.1f}" '
                   f'y2="{py(c["eta_mean"]):.1f}" stroke="{col}" stroke-width="0.8" stroke-dasharray="2,3"/>')
        name = "plain SGD" if c["momentum"] == 0 else f'beta {c["momentum"]} {"Nesterov" if c["nesterov"] else "heavy-ball"}'
        out.append(f'<line x1="{legend_x}" y1="{legend_y}" x2="{legend_x + 25}" y2="{legend_y}" stroke="{col}" '
                   f'stroke-width="2"{dash}/><text x="{legend_x + 30}" y="{legend_y + 4}">{name}</text>')
        legend_y += 18
    out.append(f'<text x="{m + 6}" y="{h - m - 8}">stable below each curve; dotted: its full-batch limit</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("gram")
    ap.add_argument("outputs", type=int)
    ap.add_argument("--svg", default=None)
    ap.add_argument("--betas", default="0.5,0.9,0.99")
    args = ap.parse_args()
    t0 = time.time()
    g = sgdstab.Geometry.from_gram(sgdstab.read_matrix(args.gram), args.outputs)
    batches = sgdstab.default_batches(g.samples)
    curves = []
    plain = sgdstab.curve(g, batches)
    curves.append({"momentum": 0.0, "nesterov": False, "batches": plain.batches, "eta_star": plain.eta_star,
                   "eta_mean": g.eta_gd, "converged": plain.converged, "matvecs": sum(p.matvecs for p in plain.points)})
    for beta in map(float, args.betas.split(",")):
        for nesterov in (False, True):
            c = sgdstab.curve(g, batches, momentum=beta, nesterov=nesterov)
            curves.append({"momentum": beta, "nesterov": nesterov, "batches": c.batches, "eta_star": c.eta_star,
                           "eta_mean": c.points[0].eta_mean, "converged": c.converged,
                           "matvecs": sum(p.matvecs for p in c.points)})
    print(f"n = {g.samples}, C = {g.outputs}, rank {g.rank}, lambda_max(H) = {g.lambda_max:.6g}, "
          f"2/lambda_max = {g.eta_gd:.6g}; without replacement; loss 1/2 |f - y|^2, mean over samples")
    print("| momentum | " + " | ".join(f"B = {b}" for b in batches) + " | full batch limit | eta*(1) / limit |")
    print("|---" * (len(batches) + 3) + "|")
    for c in curves:
        name = "none" if c["momentum"] == 0 else f'{c["momentum"]:g} {"Nesterov" if c["nesterov"] else "heavy-ball"}'
        row = " | ".join(f"{e:.4g}" for e in c["eta_star"])
        print(f"| {name} | {row} | {c['eta_mean']:.4g} | {c['eta_star'][0] / c['eta_mean']:.3g} |"
              + ("" if c["converged"] else " (NOT converged)"))
    print(f"applications of the operator: " + ", ".join(str(c["matvecs"]) for c in curves)
          + f"; {time.time() - t0:.0f} s in all")
    if args.svg:
        svg(curves, g.eta_gd, args.svg, f"eta*(B) with momentum: Fashion-MNIST minimum, n = {g.samples}, C = {g.outputs}")
        print(f"picture: {args.svg}")
    return 0 if all(c["converged"] for c in curves) else 3


if __name__ == "__main__":
    raise SystemExit(main())
