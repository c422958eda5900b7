#pragma once
/// \file sgdstab.hpp
/// \brief Umbrella header: everything public in sgdstab.
#include "sgdstab/bounds.hpp"
#include "sgdstab/data.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/escape.hpp"
#include "sgdstab/geometry.hpp"
#include "sgdstab/matrix_io.hpp"
#include "sgdstab/memory.hpp"
#include "sgdstab/minimize.hpp"
#include "sgdstab/mlp.hpp"
#include "sgdstab/moment_operator.hpp"
#include "sgdstab/montecarlo.hpp"
#include "sgdstab/random.hpp"
#include "sgdstab/sampling.hpp"
#include "sgdstab/schedule.hpp"
#include "sgdstab/stability.hpp"
#include "sgdstab/types.hpp"
