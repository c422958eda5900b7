#!/usr/bin/env bash
# Installs the Debian packages sgdstab needs to build and test, when missing.
set -euo pipefail
pkgs=(g++ cmake make libeigen3-dev libspectra-dev libboost-math-dev nlohmann-json3-dev
      libopenblas-dev zlib1g-dev libgtest-dev libbenchmark-dev libtorch-dev libcli11-dev
      clang libfuzzer-14-dev
      python3-dev pybind11-dev python3-numpy python3-pytest python3-torch python3-pip python3-setuptools
      slepc-dev petsc-dev libscalapack-openmpi-dev openmpi-bin libopenmpi-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all packages present"
  exit 0
fi
echo "install_deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
