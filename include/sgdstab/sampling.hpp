#pragma once
/// \file sampling.hpp
/// \brief Mini-batch sampling schemes as values, and their second-moment factors.
///
/// Every closed-form scheme enters the theory only through two numbers
/// (theory/sampling.md, eq. 3):
/// \f[ E[H_\xi S H_\xi] = \alpha\, H S H + \beta\, \tfrac1n \sum_i h_i S h_i ,
///     \qquad E[H_\xi] = H, \f]
/// with H_xi = (1/B) sum over the batch of the per-sample Hessians h_i.
///
/// | scheme               | alpha                 | beta                  |
/// |----------------------|-----------------------|-----------------------|
/// | without (default)    | n(B-1)/(B(n-1))       | (n-B)/(B(n-1))        |
/// | with                 | (B-1)/B               | 1/B                   |
/// | bernoulli            | 1                     | (n-B)/(nB)            |
///
/// `without` draws a uniform B-subset independently at every step, `with`
/// draws B i.i.d. indices, `bernoulli` keeps each sample with probability B/n
/// and divides the summed gradient by B. Random reshuffling (epochs) has no
/// closed form and is not a value of this enum.
///
/// \code
/// auto f = sgdstab::sampling_factors(sgdstab::Sampling::without_replacement, 100, 8);
/// // f.alpha + f.beta == 1 for `without` and `with`
/// \endcode
#include <Eigen/Core>
#include <string>
#include <string_view>

#include "sgdstab/types.hpp"

namespace sgdstab {

/// Coefficients of E[H_xi S H_xi] = alpha HSH + beta (1/n) sum_i h_i S h_i.
struct SamplingFactors {
  double alpha;
  double beta;
};

/// The one batch-size check of the library: \throws sgdstab::invalid_argument
/// "<where>: batch size B must satisfy 1 <= B <= n = <n>, got B = <batch>"
/// unless samples >= 1 and 1 <= batch <= samples.
void check_batch(Index batch, Index samples, const std::string& where);

/// The factors of `scheme` for n samples and batch size B.
/// \throws sgdstab::invalid_argument unless n >= 1 and 1 <= B <= n.
SamplingFactors sampling_factors(Sampling scheme, Index samples, Index batch);

}  // namespace sgdstab
