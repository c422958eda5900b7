#pragma once
/// \file sgdstab.hpp
/// \brief Umbrella header: everything public in sgdstab, by layer (as lib/;
/// a header includes only headers of its own layer or those above it,
/// checked by tests/check_layers.py).

// foundations
#include "sgdstab/errors.hpp"
#include "sgdstab/interrupt.hpp"
#include "sgdstab/machine.hpp"
#include "sgdstab/memory.hpp"
#include "sgdstab/options.hpp"
#include "sgdstab/random.hpp"
#include "sgdstab/solver.hpp"
#include "sgdstab/types.hpp"
// input
#include "sgdstab/data.hpp"
#include "sgdstab/matrix_io.hpp"
// geometry
#include "sgdstab/geometry.hpp"
#include "sgdstab/linearized_model.hpp"
#include "sgdstab/loss_curvature.hpp"
#include "sgdstab/sampling.hpp"
#include "sgdstab/schedule.hpp"
// operators
#include "sgdstab/device.hpp"
#include "sgdstab/moment_operator.hpp"
// solvers
#include "sgdstab/adaptive.hpp"
#include "sgdstab/band.hpp"
#include "sgdstab/bounds.hpp"
#include "sgdstab/covariance.hpp"
#include "sgdstab/momentum.hpp"
#include "sgdstab/region.hpp"
#include "sgdstab/stability.hpp"
#include "sgdstab/weight_decay.hpp"
// models and training
#include "sgdstab/escape.hpp"
#include "sgdstab/minimize.hpp"
#include "sgdstab/mlp.hpp"
// simulation
#include "sgdstab/montecarlo.hpp"
