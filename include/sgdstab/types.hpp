#pragma once
/// \file types.hpp
/// \brief The vocabulary every sgdstab header shares: the index type, the
/// status of a numerical result, and the enumerations users choose from,
/// with their one text spelling each (the command line's, the JSON's).
///
/// **Status.** Every result struct of a numerical routine carries a
/// `Status` (in the spirit of Spectra's `CompInfo` and Ceres'
/// `TerminationType`); a number is to be trusted only when its status is
/// `Status::converged`. Contract violations are exceptions instead
/// (errors.hpp).
///
/// **Text.** `to_string(x)` gives the spelling of any enumerator below and
/// `parse<E>(text)` its inverse, which throws sgdstab::invalid_argument
/// naming what was expected (`choices<E>()`, e.g. "without|with|bernoulli").
///
/// \code
/// sgdstab::Sampling s = sgdstab::parse<sgdstab::Sampling>("with");
/// std::string t = sgdstab::to_string(s);               // "with"
/// std::string all = sgdstab::choices<sgdstab::Method>();  // "automatic|dense|lanczos"
/// \endcode
#include <Eigen/Core>
#include <string>
#include <string_view>

namespace sgdstab {

/// Sizes and indices: Eigen's signed index type.
using Index = Eigen::Index;

/// A dense row-major (C-order) matrix, e.g. a NumPy array viewed in place.
using RowMatrixXd = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// How a numerical routine ended. Only `converged` marks a usable number.
enum class Status {
  converged,          ///< the requested accuracy was reached
  not_converged,      ///< an iterative method stopped at its iteration or step limit
  diverged,           ///< an iteration blew up (loss or iterate not finite, or past its bound)
  numerical_failure   ///< a factorization or eigensolver reported failure (e.g. LAPACK info != 0)
};

/// Outcome of comparing a Monte Carlo estimate with the exact answer.
enum class Verdict {
  agree,        ///< every test passed at the stated significance
  disagree,     ///< a test failed: the estimates contradict the exact answer
  inconclusive  ///< no test could decide (no exact answer, heavy tails, a failed solve)
};

/// Eigensolver used for a stability quantity.
enum class Method {
  automatic,  ///< dense when r(r+1)/2 <= SolverOptions::dense_max_dimension
  dense,      ///< explicit matrix + LAPACK dsyevd
  lanczos     ///< matrix-free implicitly restarted Lanczos (Spectra)
};

/// Where the reduction to range(H) is computed (theory/reduction.md).
enum class Space {
  automatic,  ///< sample space when n*c <= p, parameter space otherwise
  parameter,  ///< eigendecomposition of J^T J (p x p); needs a Jacobian
  sample      ///< eigendecomposition of K = J J^T ((n c) x (n c))
};

/// How SGD draws its mini-batch at every step (closed-form schemes; sampling.hpp).
enum class Sampling {
  without_replacement,  ///< uniform B-subset, independent across steps ("without")
  with_replacement,     ///< B i.i.d. uniform indices ("with")
  bernoulli             ///< each sample kept w.p. B/n, sum divided by B ("bernoulli")
};

/// A batch schedule of simulated SGD: the closed-form schemes plus random
/// reshuffling (epochs of a random permutation; schedule.hpp).
enum class Schedule { without_replacement, with_replacement, bernoulli, reshuffle };

/// Where tensors live (the LibTorch module; "auto" = CUDA when available).
enum class Device { cpu, cuda, automatic };

/// Hidden-layer nonlinearities of an Mlp ("linear" is accepted for identity).
enum class Activation { identity, relu, tanh, erf, softplus };

/// Fixed per-layer multipliers s_l (theory/mlp.md, section 2).
enum class Parametrization {
  standard,   ///< s_l = 1, W ~ N(0, gain / m_{l-1})
  ntk,        ///< s_l = sqrt(gain / m_{l-1}), W ~ N(0, 1)
  mean_field  ///< as ntk, but the output layer has s_L = 1 / m_{L-1}
};

/// Weight variance gain: he = 2, lecun = 1.
enum class Init { he, lecun };

/// How image pixels p in [0, 255] become inputs x (data.hpp).
enum class PixelScaling {
  none,         ///< x = p
  unit,         ///< x = p / 255
  standardize,  ///< x = (p - mean) / std (population std); features with std 0 are 0
  center        ///< x = p / 255 - mean(p / 255)
};

/// The status of a result built from two: the first that is not converged.
inline Status combine(Status first, Status second) { return first == Status::converged ? second : first; }

std::string to_string(Status value);
std::string to_string(Verdict value);
std::string to_string(Method value);
std::string to_string(Space value);
std::string to_string(Sampling value);
std::string to_string(Schedule value);
std::string to_string(Device value);
std::string to_string(Activation value);
std::string to_string(Parametrization value);
std::string to_string(Init value);
std::string to_string(PixelScaling value);

/// The enumerator spelled `text` (aliases included, e.g. "linear" for
/// Activation::identity). \throws sgdstab::invalid_argument
/// "<kind>: expected one of <choices>, got '<text>'" otherwise.
template <class E>
E parse(std::string_view text);

/// The accepted spellings of E joined by '|' (without aliases).
template <class E>
std::string choices();

/// What E is called in messages ("sampling", "method", ...).
template <class E>
std::string kind_name();


}  // namespace sgdstab
