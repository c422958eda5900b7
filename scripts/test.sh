#!/usr/bin/env bash
# The test command: installs what is missing, configures, builds, runs every
# test (CTest + GoogleTest), then installs the package to a scratch prefix and
# builds and runs the find_package example against it.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each stage's end is logged with the seconds since the start (the CI
# breakdown of docs/building.md).
stage() { echo "test.sh: $1 ($SECONDS s)"; }
bash scripts/install_deps.sh all
stage "packages"
export BUILD_DIR=${BUILD_DIR:-build}
# Tests and benchmarks are switched on explicitly: the build folder may have
# been configured without them (scripts/run.sh does that), and CMake keeps
# cached options. ctest fails when it finds no test.
bash scripts/build.sh -DSGDSTAB_BUILD_TESTS=ON -DSGDSTAB_BUILD_BENCH=ON
[ -z "${SGDSTAB_CONFIGURE_ONLY:-}" ] || exit 0
stage "configure and build"
(cd "$BUILD_DIR" && ctest --output-on-failure --no-tests=error -j "$(nproc)")
stage "ctest"

prefix="$PWD/$BUILD_DIR/_install"
cmake --install "$BUILD_DIR" --prefix "$prefix" >/dev/null
cmake -S examples/threshold_from_jacobian -B "$BUILD_DIR/example" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$BUILD_DIR/example" -j "$(nproc)" >/dev/null
"$BUILD_DIR/example/threshold_from_jacobian" examples/threshold_from_jacobian/jacobian.csv 1 4
echo "example: find_package(sgdstab) build and run OK"
stage "install and find_package example"
# The Python package as installed (cmake --install puts it under the prefix
# where Debian's python3 looks: lib/python3.X/dist-packages).
pydir=$(ls -d "$prefix"/lib/python3*/*-packages 2>/dev/null | head -1 || true)
if [ -n "$pydir" ] && [ -f "$pydir/sgdstab/__init__.py" ]; then
  (cd / && PYTHONPATH="$pydir" /usr/bin/python3 -c "import numpy as np, sgdstab; g = sgdstab.Geometry.from_jacobian(np.eye(3), 1); assert abs(sgdstab.threshold(g, 3).eta_star - 6.0) < 1e-12; print('example: installed Python package imports and runs from', sgdstab.__file__)")
else
  echo "example: Python package not installed (this build has none)"
fi
stage "installed Python package"
# `pip install .` from the source tree, offline (setup.py drives CMake; only
# the extension's target is built), into a scratch folder. setup.py packages
# the extension of this build folder (SGDSTAB_CMAKE_BUILD_DIR) when it has
# one, rather than compile the library a second time (about 2 minutes on 2
# cores); a fresh `pip install .` configures its own (docs/python.md).
if /usr/bin/python3 -c "import setuptools" >/dev/null 2>&1 && /usr/bin/python3 -m pip --version >/dev/null 2>&1; then
  pipdir="$(cd "$BUILD_DIR" && pwd)/_pip"
  rm -rf "$pipdir"
  if ls "$BUILD_DIR"/python/sgdstab/_core*.so >/dev/null 2>&1; then
    export SGDSTAB_CMAKE_BUILD_DIR="$BUILD_DIR"
  fi
  /usr/bin/python3 -m pip install -q --no-build-isolation --no-deps --no-cache-dir --target "$pipdir" . \
    >"$BUILD_DIR/pip-install.log" 2>&1 || { cat "$BUILD_DIR/pip-install.log"; exit 1; }
  (cd / && PYTHONPATH="$pipdir" /usr/bin/python3 -c "import numpy as np, sgdstab; g = sgdstab.Geometry.from_jacobian(np.eye(3), 1); assert abs(sgdstab.threshold(g, 3).eta_star - 6.0) < 1e-12; print('example: pip install --no-build-isolation . builds a package that imports and runs')")
else
  echo "example: pip install check skipped (python3-pip or python3-setuptools missing)"
fi
stage "pip install ."
# The Fashion-MNIST replication is built here (it links against the installed
# package too) but run separately: scripts/fashion_mnist.sh (minutes).
cmake -S examples/fashion_mnist_mulayoff -B "$BUILD_DIR/example_fmnist" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$BUILD_DIR/example_fmnist" -j "$(nproc)" >/dev/null
echo "example: fashion_mnist_mulayoff builds against the installed package"
cmake -S examples/alignment_flatness -B "$BUILD_DIR/example_alignment" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$BUILD_DIR/example_alignment" -j "$(nproc)" >/dev/null
echo "example: alignment_flatness builds against the installed package"
# The LibTorch module from C++ against the installed package (when it was built).
if [ -f "$prefix/lib/cmake/sgdstab/sgdstabCnnTargets.cmake" ] || ls "$prefix"/lib*/cmake/sgdstab/sgdstabCnnTargets.cmake >/dev/null 2>&1; then
  cmake -S examples/cnn_from_cpp -B "$BUILD_DIR/example_cnn" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
  cmake --build "$BUILD_DIR/example_cnn" -j "$(nproc)" >/dev/null
  "$BUILD_DIR/example_cnn/cnn_from_cpp"
  echo "example: find_package(sgdstab COMPONENTS cnn) build and run OK"
else
  echo "example: cnn_from_cpp skipped (this build has no LibTorch module)"
fi
stage "examples built; done"
