#!/usr/bin/env bash
# The Wu, Ma & E (2018) replication of docs/experiments.md (issue #31): GD, SGD
# and heavy-ball runs of the 784-500-500-500-10 ReLU network on 1 000
# Fashion-MNIST images, the sharpness, non-uniformity and |H|_F of every
# minimum reached and the exact eta*(B) of the chosen settings, into
# docs/experiments/wu_ma_e.json and .svg (rows already there are kept: an
# interrupted run resumes). Installs the Debian packages it needs (the data
# set, PyTorch), builds the library with its Python package, runs
# examples/wu_ma_e/wu_ma_e.py with the arguments given (e.g. --seeds 0
# --batches 10,100; --quick for the smoke run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh all data
export BUILD_DIR=${BUILD_DIR:-build}
bash scripts/build.sh >&2
PYTHONPATH="$BUILD_DIR/python" /usr/bin/python3 examples/wu_ma_e/wu_ma_e.py "$@"
