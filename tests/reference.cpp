// Definitions of the test references declared in reference.hpp, compiled once
// for the whole suite (in the header they were instantiated by every test file:
// about 6 s of compile time each).
#include "reference.hpp"

#include <functional>

namespace ref {

SymEigenSolver::SymEigenSolver(const MatrixXd& m, bool vectors) {
  Eigen::SelfAdjointEigenSolver<MatrixXd> es(m, vectors ? Eigen::ComputeEigenvectors : Eigen::EigenvaluesOnly);
  values_ = es.eigenvalues();
  if (vectors) vectors_ = es.eigenvectors();
}

GenSymEigenSolver::GenSymEigenSolver(const MatrixXd& a, const MatrixXd& b) {
  Eigen::GeneralizedSelfAdjointEigenSolver<MatrixXd> es(a, b, Eigen::EigenvaluesOnly);
  values_ = es.eigenvalues();
}

EigenSolver::EigenSolver(const MatrixXd& m) : values_(Eigen::EigenSolver<MatrixXd>(m, false).eigenvalues()) {}

MatrixXd gaussian(Eigen::Index rows, Eigen::Index cols, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> nd(0.0, 1.0);
  MatrixXd m(rows, cols);
  for (Eigen::Index j = 0; j < cols; ++j)
    for (Eigen::Index i = 0; i < rows; ++i) m(i, j) = nd(gen);
  return m;
}

MatrixXd random_orthogonal(Eigen::Index p, std::uint64_t seed) {
  Eigen::HouseholderQR<MatrixXd> qr(gaussian(p, p, seed));
  return qr.householderQ() * MatrixXd::Identity(p, p);
}

// Per-sample Hessians h_i = J_i^T J_i in parameter space.
std::vector<MatrixXd> per_sample(const MatrixXd& J, Eigen::Index c) {
  std::vector<MatrixXd> h;
  for (Eigen::Index i = 0; i < J.rows() / c; ++i) {
    const MatrixXd Ji = J.middleRows(i * c, c);
    h.push_back(Ji.transpose() * Ji);
  }
  return h;
}

// Every batch's Hessian H_xi = (1/B) sum_{i in batch} h_i with its probability.
std::vector<std::pair<MatrixXd, double>> batch_hessians(const std::vector<MatrixXd>& h, Eigen::Index B,
                                                        sgdstab::Sampling s) {
  const Eigen::Index n = static_cast<Eigen::Index>(h.size()), p = h[0].rows();
  std::vector<std::pair<std::vector<int>, double>> batches;
  if (s == sgdstab::Sampling::without_replacement) {
    std::vector<std::vector<int>> subsets;
    std::function<void(int, std::vector<int>&)> rec = [&](int start, std::vector<int>& cur) {
      if (static_cast<Eigen::Index>(cur.size()) == B) { subsets.push_back(cur); return; }
      for (int i = start; i < n; ++i) { cur.push_back(i); rec(i + 1, cur); cur.pop_back(); }
    };
    std::vector<int> cur;
    rec(0, cur);
    for (auto& sub : subsets) batches.push_back({sub, 1.0 / static_cast<double>(subsets.size())});
  } else if (s == sgdstab::Sampling::with_replacement) {
    long long total = 1;
    for (Eigen::Index k = 0; k < B; ++k) total *= n;
    for (long long code = 0; code < total; ++code) {
      std::vector<int> tuple;
      long long c = code;
      for (Eigen::Index k = 0; k < B; ++k) { tuple.push_back(static_cast<int>(c % n)); c /= n; }
      batches.push_back({tuple, 1.0 / static_cast<double>(total)});
    }
  } else {
    const double q = static_cast<double>(B) / static_cast<double>(n);
    for (long long mask = 0; mask < (1LL << n); ++mask) {
      std::vector<int> sub;
      for (int i = 0; i < n; ++i) if (mask & (1LL << i)) sub.push_back(i);
      const double prob = std::pow(q, static_cast<double>(sub.size())) *
                          std::pow(1.0 - q, static_cast<double>(n - static_cast<Eigen::Index>(sub.size())));
      batches.push_back({sub, prob});
    }
  }
  std::vector<std::pair<MatrixXd, double>> out;
  for (auto& [members, prob] : batches) {
    MatrixXd hb = MatrixXd::Zero(p, p);
    for (int i : members) hb += h[static_cast<std::size_t>(i)];
    hb /= static_cast<double>(B);
    out.push_back({hb, prob});
  }
  return out;
}

Moments enumerate(const std::vector<MatrixXd>& h, Eigen::Index B, sgdstab::Sampling s) {
  const Eigen::Index p = h[0].rows();
  Moments m{MatrixXd::Zero(p, p), MatrixXd::Zero(p * p, p * p)};
  for (const auto& [hb, prob] : batch_hessians(h, B, s)) {
    m.mean += prob * hb;
    // kron(hb, hb): vec(hb S hb) = kron(hb^T, hb) vec(S), hb symmetric.
    for (Eigen::Index a = 0; a < p; ++a)
      for (Eigen::Index b = 0; b < p; ++b) m.kron2.block(a * p, b * p, p, p) += prob * hb(a, b) * hb;
  }
  return m;
}

MatrixXd kron_identity_sum(const MatrixXd& H) {  // H (+) H = kron(I, H) + kron(H, I)
  const Eigen::Index p = H.rows();
  MatrixXd out = MatrixXd::Zero(p * p, p * p);
  for (Eigen::Index a = 0; a < p; ++a) {
    out.block(a * p, a * p, p, p) += H;
    for (Eigen::Index b = 0; b < p; ++b) out.block(a * p, b * p, p, p) += H(a, b) * MatrixXd::Identity(p, p);
  }
  return out;
}

// Orthonormal basis (columns vec(E_kl)) of symmetric matrices supported on range(H).
MatrixXd sym_range_basis(const MatrixXd& H, double rel_tol) {
  const SymEigenSolver es(H);
  const Eigen::Index p = H.rows();
  const double top = es.eigenvalues().maxCoeff();
  std::vector<VectorXd> v;
  for (Eigen::Index k = 0; k < p; ++k)
    if (es.eigenvalues()(k) > rel_tol * top) v.push_back(es.eigenvectors().col(k));
  const Eigen::Index r = static_cast<Eigen::Index>(v.size());
  MatrixXd basis(p * p, r * (r + 1) / 2);
  Eigen::Index col = 0;
  for (Eigen::Index l = 0; l < r; ++l)
    for (Eigen::Index k = l; k < r; ++k) {
      MatrixXd e = v[k] * v[l].transpose();
      if (k != l) e = (e + e.transpose()).eval() / std::sqrt(2.0);
      basis.col(col++) = Eigen::Map<VectorXd>(e.data(), p * p);
    }
  return basis;
}

MatrixXd Reference::T(double eta) const {
  const Eigen::Index p = H.rows();
  return MatrixXd::Identity(p * p, p * p) - eta * kron_identity_sum(mean) + eta * eta * kron2;
}

MatrixXd Reference::apply_T(const MatrixXd& S, double eta) const {
  const Eigen::Index p = H.rows();
  VectorXd v = T(eta) * Eigen::Map<const VectorXd>(S.data(), p * p);
  return Eigen::Map<MatrixXd>(v.data(), p, p);
}

double Reference::rho(double eta) const {
  const MatrixXd t = basis.transpose() * T(eta) * basis;
  return SymEigenSolver(0.5 * (t + t.transpose()), false).eigenvalues().cwiseAbs().maxCoeff();
}

double Reference::eta_star() const {
  const MatrixXd a = basis.transpose() * kron_identity_sum(mean) * basis;
  const MatrixXd q = basis.transpose() * kron2 * basis;
  return 1.0 / GenSymEigenSolver(0.5 * (q + q.transpose()), 0.5 * (a + a.transpose())).eigenvalues().maxCoeff();
}

Reference make_reference(const MatrixXd& J, Eigen::Index c, Eigen::Index B, sgdstab::Sampling s) {
  Reference r;
  const auto h = per_sample(J, c);
  r.H = J.transpose() * J / static_cast<double>(h.size());
  const Moments m = enumerate(h, B, s);
  r.mean = m.mean;
  r.kron2 = m.kron2;
  r.basis = sym_range_basis(r.H);
  const Eigen::Index mm = r.basis.cols();
  r.rank = static_cast<Eigen::Index>((std::sqrt(8.0 * mm + 1.0) - 1.0) / 2.0 + 0.5);
  return r;
}

}  // namespace ref
