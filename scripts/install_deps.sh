#!/usr/bin/env bash
# Installs the Debian packages sgdstab needs, when missing, by set:
#   core    the library and the sgdstab program (what scripts/run.sh needs)
#   tests   GoogleTest and Google Benchmark (the suite and bench/)
#   python  the Python package (pybind11, NumPy, pytest, pip)
#   torch   the optional LibTorch module sgdstab::cnn and the PyTorch helpers
#   mpi     sgdstab::mpi and sgdstab-mpi (SLEPc, PETSc, ScaLAPACK, OpenMPI)
#   fuzz    the sanitizer build and the libFuzzer targets (Clang)
#   data    the Fashion-MNIST files (the experiments' scripts; no test needs them)
#   bench   SciPy, for the peer benchmark bench/scipy_peer.py (no test needs it)
#   all     every set above but data and bench (what scripts/test.sh and CI install)
# usage: install_deps.sh [SET ...]   (no argument: all)
# core is always included. The CUDA toolkit is not a Debian package here:
# the GPU backend is built when one is found in its usual place (docs/gpu.md).
set -euo pipefail
declare -A sets=(
  [core]="g++ cmake make libeigen3-dev libspectra-dev libboost-math-dev nlohmann-json3-dev libopenblas-dev zlib1g-dev libcli11-dev"
  [tests]="libgtest-dev libbenchmark-dev"
  [python]="python3-dev pybind11-dev python3-numpy python3-pytest python3-pip python3-setuptools"
  [torch]="libtorch-dev python3-torch"
  [mpi]="pkg-config slepc-dev petsc-dev libscalapack-openmpi-dev openmpi-bin libopenmpi-dev"
  [fuzz]="clang libfuzzer-14-dev"
  [data]="dataset-fashion-mnist"
  [bench]="python3-scipy"
)
order=(core tests python torch mpi fuzz)  # all
known=("${order[@]}" data bench)
[ $# -gt 0 ] || set -- all
wanted=(core)
for s in "$@"; do
  if [ "$s" = all ]; then
    wanted+=("${order[@]}")
  elif [ -n "${sets[$s]+x}" ]; then
    wanted+=("$s")
  else
    echo "install_deps: unknown set '$s' (sets: ${known[*]} all)" >&2
    exit 2
  fi
done
missing=()
for s in "${known[@]}"; do
  case " ${wanted[*]} " in *" $s "*) ;; *) continue ;; esac
  for p in ${sets[$s]}; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
done
label=$(printf '%s\n' "${wanted[@]}" | awk '!seen[$0]++' | paste -sd, -)
if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all packages present ($label)"
  exit 0
fi
echo "install_deps ($label): installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
