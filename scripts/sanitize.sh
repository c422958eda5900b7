#!/usr/bin/env bash
# The sanitizer build (issue #15): the library, the CLI, the tests and the
# fuzz targets built by Clang with AddressSanitizer and UndefinedBehavior-
# Sanitizer (any report aborts), Eigen's own assertions on (no NDEBUG), then
# the whole CTest suite run on it. The LibTorch module is left out of this
# build: Debian's LibTorch is not built with the sanitizers, and its own
# allocations and static initializers report inside libtorch itself. The
# Python package is left out too: an extension with the static ASan runtime
# cannot be loaded by an uninstrumented python3 (its C++ code is the
# library's and cli/results.cpp, which the C++ suite covers here).
# Build folder: ${SANITIZE_BUILD_DIR:-build-sanitize}. scripts/fuzz.sh then
# fuzzes the targets of the same build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh core tests fuzz
BUILD_DIR=${SANITIZE_BUILD_DIR:-build-sanitize}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O2" \
  -DCMAKE_CXX_COMPILER=clang++ -DSGDSTAB_SANITIZE=address,undefined -DSGDSTAB_BUILD_FUZZ=ON \
  -DSGDSTAB_BUILD_TESTS=ON -DSGDSTAB_BUILD_BENCH=OFF -DSGDSTAB_WITH_TORCH=OFF -DSGDSTAB_INSTALL=OFF \
  -DSGDSTAB_PYTHON=OFF -DSGDSTAB_WITH_MPI=OFF -DSGDSTAB_WITH_CUDA=OFF  # the CUDA runtime is not ASan-clean
[ -z "${SGDSTAB_CONFIGURE_ONLY:-}" ] || exit 0
cmake --build "$BUILD_DIR" -j "$(nproc)"
echo "sanitize: packages, configure and build ($SECONDS s)"
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# Left out here (they run in full in the test command, scripts/test.sh):
# Scripts.* configure other build folders with the default compiler, not
# this build's business; and the long tests below, whose code a shorter
# test still runs under the sanitizers (kept siblings in brackets): loops
# of Monte Carlo or nonlinear runs, a thread-count comparison, and a test
# whose time is its own dense reference. The first five were ~190 s of the
# ~650 s suite under ASan on an AMD EPYC, the last 39 s.
#   Momentum.SampledOperatorIntervalCoversTheExactRadiusAndCrossCheckAgrees
#     [Momentum.SimulatedTrajectoriesCoverTheExactMoments, Cli.MomentumOnRegionAndMonteCarlo]
#   WeightDecay.SampledRadiusAndCrossCheckAgreeWithTheExactAnswer
#     [WeightDecay.MonteCarloOfTheLinearizedStepsMatchesTheEnumeratedMap]
#   Momentum.NonlinearMomentumSgdReturnsBelowAndEscapesAboveTheThreshold
#     [Cli.MomentumOnEscapeAndTheTrainer]
#   Cli.EscapeClassifiesNonlinearRuns   [Cli.MomentumOnEscapeAndTheTrainer]
#   Reliability.SameNumbersWithOneAndTwoBlasThreads (a thread-count
#     comparison of the same code) [Concurrency.PublicFunctionsFromManyThreadsGiveTheSerialAnswers]
#   MomentumWeightDecay.ThresholdEqualsBisectionOnTheExplicitRadiusWithNullDirections
#     (39 s under ASan, nearly all in its own dense reference, a bisection on
#     explicit Kronecker radii) [MomentumWeightDecay.ReducesToMomentumAndToPlainWeightDecay
#     (rank 12 < p = 20: the null directions), MomentumWeightDecay.CurveAndRegionEqualSingleThresholdsAndTheBandHolds]
#   Adaptive.AdamL2MonteCarloAgreesWithTheEnumeratedMapWithL2Decay (77 s
#     under ASan: six cross-checks of 20 000 trajectories and 5000 sampled
#     blocks) [Cli.LossCurvatureAndAdaptiveOptimizers, whose montecarlo
#     --optimizer adam --weight-decay runs the same simulation, sampled
#     operator and exact moments]
#   Adaptive.AdamL2RegionPointsAndBandHoldTheEnumeratedMapWithL2Decay (81 s,
#     nearly all in its own reference, bisections on enumerated Kronecker
#     radii) [Cli.LossCurvatureAndAdaptiveOptimizers, whose region --optimizer
#     rmsprop --weight-decay runs adam_l2_region and its marks]
# And Cli.MemoryLimits (tests/memory_limit_test.sh), which runs the program
# under `ulimit -v`: ASan reserves terabytes of address space and cannot
# start under it [Memory.AvailableMemorySeesTheAddressSpaceLimit, which
# sets the limit after start-up].
SKIP='^Scripts\.|^Momentum\.SampledOperatorIntervalCoversTheExactRadiusAndCrossCheckAgrees$'
SKIP+='|^WeightDecay\.SampledRadiusAndCrossCheckAgreeWithTheExactAnswer$'
SKIP+='|^Momentum\.NonlinearMomentumSgdReturnsBelowAndEscapesAboveTheThreshold$'
SKIP+='|^Cli\.EscapeClassifiesNonlinearRuns$|^Reliability\.SameNumbersWithOneAndTwoBlasThreads$'
SKIP+='|^MomentumWeightDecay\.ThresholdEqualsBisectionOnTheExplicitRadiusWithNullDirections$'
SKIP+='|^Adaptive\.AdamL2MonteCarloAgreesWithTheEnumeratedMapWithL2Decay$'
SKIP+='|^Adaptive\.AdamL2RegionPointsAndBandHoldTheEnumeratedMapWithL2Decay$'
SKIP+='|^Cli\.MemoryLimits$'
(cd "$BUILD_DIR" && ctest --output-on-failure --no-tests=error -j "$(nproc)" -E "$SKIP")
echo "sanitize: $(cd "$BUILD_DIR" && ctest -N -E "$SKIP" | tail -1 | sed 's/Total Tests: //') tests passed under ASan + UBSan ($SECONDS s)"
