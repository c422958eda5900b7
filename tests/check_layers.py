#!/usr/bin/env python3
"""The layers of lib/ (docs/building.md, "Layout"): every file of a layer
includes only headers of its own layer or of the layers above it, public
(include/sgdstab/) or internal (lib/<layer>/). Exits 1 naming each include
that runs back up, or each file or header whose layer is unknown.

usage: check_layers.py SOURCE_DIR
"""
import os
import re
import sys

ORDER = ["foundations", "input", "geometry", "operators", "solvers", "models", "simulation", "distributed", "cnn"]
# The layer of each public header (include/sgdstab/NAME.hpp).
PUBLIC = {
    "types": "foundations", "errors": "foundations", "solver": "foundations", "options": "foundations",
    "interrupt": "foundations", "memory": "foundations", "random": "foundations", "machine": "foundations",
    "matrix_io": "input", "data": "input",
    "geometry": "geometry", "sampling": "geometry", "schedule": "geometry", "linearized_model": "geometry",
    "loss_curvature": "geometry",
    "moment_operator": "operators", "device": "operators",
    "stability": "solvers", "region": "solvers", "momentum": "solvers", "bounds": "solvers", "band": "solvers",
    "weight_decay": "solvers", "adaptive": "solvers", "covariance": "solvers",
    "mlp": "models", "minimize": "models", "escape": "models",
    "montecarlo": "simulation",
    "distributed": "distributed",
    "cnn": "cnn", "cnn_options": "cnn",
    "sgdstab": "cnn",  # the umbrella header includes every layer but cnn and distributed
}


def layer_of_file(rel):
    parts = rel.split("/")
    if parts[0] == "include":
        return PUBLIC.get(os.path.splitext(parts[-1])[0])
    if parts[0] == "lib" and len(parts) >= 3 and parts[1] in ORDER:
        return parts[1]
    return None


def layer_of_include(name):
    if name.startswith("sgdstab/"):
        return PUBLIC.get(os.path.splitext(name[len("sgdstab/"):])[0])
    first = name.split("/")[0]
    return first if first in ORDER else None


def main(root):
    problems, checked = [], 0
    for top in ("include/sgdstab", "lib"):
        for dirpath, _, names in os.walk(os.path.join(root, top)):
            for n in sorted(names):
                if not n.endswith((".hpp", ".cpp", ".cu")):
                    continue
                rel = os.path.relpath(os.path.join(dirpath, n), root)
                mine = layer_of_file(rel)
                if mine is None:
                    problems.append(f"{rel}: in no layer (lib/<layer>/ or a header listed in tests/check_layers.py)")
                    continue
                checked += 1
                with open(os.path.join(root, rel), encoding="utf-8") as f:
                    for lineno, line in enumerate(f, 1):
                        m = re.match(r'\s*#\s*include\s*"([^"]+)"', line)
                        if not m:
                            continue
                        theirs = layer_of_include(m.group(1))
                        if theirs is None:
                            problems.append(f"{rel}:{lineno}: \"{m.group(1)}\" names no layer (include it as \"<layer>/...\")")
                        elif ORDER.index(theirs) > ORDER.index(mine):
                            problems.append(f"{rel}:{lineno}: {mine} includes \"{m.group(1)}\" of {theirs}, a layer that builds on it")
    for p in problems:
        print(p)
    print(f"{checked} files checked, {len(problems)} problems")
    return 1 if problems or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "."))
