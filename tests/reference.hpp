#pragma once
// Independent references for the tests: brute-force enumeration of every
// mini-batch and dense Kronecker matrices in parameter space. Nothing here
// uses the library's sampling factors, reduction or operators.
#include <gtest/gtest.h>

#include <Eigen/Dense>
#include <Eigen/Eigenvalues>
#include <functional>
#include <iomanip>
#include <random>
#include <vector>

#include "sgdstab/sampling.hpp"

namespace ref {

// The three closed-form sampling schemes, for the tests that loop over them.
inline constexpr sgdstab::Sampling kSchemes[] = {sgdstab::Sampling::without_replacement,
                                                 sgdstab::Sampling::with_replacement, sgdstab::Sampling::bernoulli};

using Eigen::MatrixXd;
using Eigen::VectorXd;

// Dense eigensolvers, compiled once here: every test file that instantiated
// Eigen's own paid 6 s (self-adjoint) to 10 s (general) of compile time.
// Same conventions as Eigen's: self-adjoint eigenvalues ascending.
class SymEigenSolver {  // Eigen::SelfAdjointEigenSolver<MatrixXd>
 public:
  explicit SymEigenSolver(const MatrixXd& m, bool vectors = true);
  const VectorXd& eigenvalues() const { return values_; }
  const MatrixXd& eigenvectors() const { return vectors_; }

 private:
  VectorXd values_;
  MatrixXd vectors_;
};

class GenSymEigenSolver {  // Eigen::GeneralizedSelfAdjointEigenSolver<MatrixXd>: a x = lambda b x, b SPD
 public:
  GenSymEigenSolver(const MatrixXd& a, const MatrixXd& b);
  const VectorXd& eigenvalues() const { return values_; }

 private:
  VectorXd values_;
};

class EigenSolver {  // Eigen::EigenSolver<MatrixXd> (eigenvalues only)
 public:
  explicit EigenSolver(const MatrixXd& m);
  const Eigen::VectorXcd& eigenvalues() const { return values_; }

 private:
  Eigen::VectorXcd values_;
};

// Gaussian matrix (entries N(0,1), column by column from mt19937_64(seed)).
MatrixXd gaussian(Eigen::Index rows, Eigen::Index cols, std::uint64_t seed);
// Haar-like orthogonal p x p (Q of the QR of gaussian(p, p, seed)).
MatrixXd random_orthogonal(Eigen::Index p, std::uint64_t seed);

// Per-sample Hessians h_i = J_i^T J_i in parameter space.
std::vector<MatrixXd> per_sample(const MatrixXd& J, Eigen::Index c);

// First and second moments of H_xi by enumerating every batch with its probability:
// E[H_xi] (p x p) and E[H_xi (x) H_xi] (p^2 x p^2).
struct Moments {
  MatrixXd mean;
  MatrixXd kron2;
};

// Every batch's Hessian H_xi = (1/B) sum_{i in batch} h_i with its probability.
std::vector<std::pair<MatrixXd, double>> batch_hessians(const std::vector<MatrixXd>& h, Eigen::Index B,
                                                        sgdstab::Sampling s);
Moments enumerate(const std::vector<MatrixXd>& h, Eigen::Index B, sgdstab::Sampling s);

// H (+) H = kron(I, H) + kron(H, I).
MatrixXd kron_identity_sum(const MatrixXd& H);

// Orthonormal basis (columns vec(E_kl)) of symmetric matrices supported on range(H).
MatrixXd sym_range_basis(const MatrixXd& H, double rel_tol = 1e-9);

struct Reference {
  MatrixXd H;            // p x p
  MatrixXd mean;         // E[H_xi]
  MatrixXd kron2;        // E[H_xi (x) H_xi]
  MatrixXd basis;        // symmetric matrices on range(H)
  Eigen::Index rank = 0;

  MatrixXd T(double eta) const;                            // dense p^2 x p^2 operator
  MatrixXd apply_T(const MatrixXd& S, double eta) const;
  double rho(double eta) const;  // spectral radius of T restricted to symmetric matrices on range(H)
  double eta_star() const;       // 1 / lambda_max of the pencil (Q, A) restricted to range(H)
};

Reference make_reference(const MatrixXd& J, Eigen::Index c, Eigen::Index B, sgdstab::Sampling s);

inline double rel_diff(double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-300); }

}  // namespace ref

// Relative comparison of scalars, printing both sides on failure.
#define EXPECT_REL_NEAR(actual, expected, tol)                                                  \
  EXPECT_LE(ref::rel_diff((actual), (expected)), (tol))                                         \
      << "  actual   = " << std::setprecision(17) << (actual) << "\n  expected = " << (expected)
