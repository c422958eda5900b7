#pragma once
// The distributed operator (theory/distributed.md, sections 2-3) and its
// top eigenvalue by SLEPc's Krylov-Schur (internal).
#include <mpi.h>

#include <Eigen/Core>
#include <optional>
#include <vector>

#include "sgdstab/distributed.hpp"
#include "sgdstab/moment_operator.hpp"
#include "sgdstab/sampling.hpp"
#include "sgdstab/solver.hpp"

namespace sgdstab::mpi::internal {

// The operator on this rank (theory/distributed.md, section 2): its slice
// [lo, hi) of the m packed coordinates, its samples [s0, s1), and the
// coefficients of y = diag_part .* x + weight .* packed(reduced D-part).
//   pencil:     y_kl = W_kl (alpha d_k d_l W_kl x_kl + (beta / n) R_kl(W o S))
//   transition: y_kl = (1 - lr (d_k + d_l) + lr^2 alpha d_k d_l) x_kl + lr^2 (beta / n) R_kl(S)
// with R(Y) = sum_i h_i Y h_i over all samples (the rank's part reduced).
class DistributedOperator {
 public:
  // (alpha, beta): the coefficients of Q (sampling.hpp), or (1 - s, s) for g(s) of theory/region.md.
  DistributedOperator(MPI_Comm comm, const DistributedGeometry& g, SamplingFactors f, bool pencil, double lr);

  Index local_size() const { return local_; }
  /// P_kl = d_k d_l / (d_k + d_l) on this rank's slice (theory/region.md).
  const Eigen::VectorXd& p_diagonal() const { return p_; }
  Index global_size() const { return m_; }
  Index applications() const { return applications_; }
  /// Where this rank's application time went (theory/distributed.md, section 6).
  const ApplicationTimes& times() const { return times_; }

  // y (this rank's slice) = M x (this rank's slice): collective.
  void apply(const double* x, double* y);

 private:
  MPI_Comm comm_;
  Index r_, c_, n_, m_;
  bool pencil_;
  const Eigen::MatrixXd& zp_;  // this rank's rows of Z (its samples)
  Index local_ = 0, lo_ = 0;
  std::vector<int> counts_, displs_;
  std::optional<Geometry> local_geometry_;             // the rank's rows of Z as a Geometry
  std::optional<SecondMomentOperator> local_d_;        // D on those rows
  Index local_samples_ = 0;
  Eigen::MatrixXd s_, part_;
  Eigen::VectorXd diag_, weight_, p_, wp_, full_, reduced_;
  Index applications_ = 0;
  ApplicationTimes times_;
};

struct TopValue {
  double value = 0.0;
  double vpv = 0.0;  // v' P v for the unit Ritz vector v (the tangent of theory/region.md, section 6)
  SolveReport report;
};

// The largest (algebraic) eigenvalue of the symmetric distributed operator
// by SLEPc's Krylov-Schur.
TopValue slepc_top(MPI_Comm comm, DistributedOperator& op, const SolverOptions& o);

// bytes_per_rank against the memory limit, on every rank alike.
void check_memory_per_rank(MPI_Comm comm, const DistributedGeometry& g, const SolverOptions& o);

}  // namespace sgdstab::mpi::internal
