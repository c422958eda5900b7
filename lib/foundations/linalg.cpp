#include "foundations/linalg.hpp"

#include "sgdstab/errors.hpp"

#include <algorithm>
#include <string>
#include <vector>

extern "C" {
void dgemm_(const char* ta, const char* tb, const int* m, const int* n, const int* k, const double* alpha,
            const double* a, const int* lda, const double* b, const int* ldb, const double* beta, double* c,
            const int* ldc);
void sgemm_(const char* ta, const char* tb, const int* m, const int* n, const int* k, const float* alpha,
            const float* a, const int* lda, const float* b, const int* ldb, const float* beta, float* c,
            const int* ldc);
void dposv_(const char* uplo, const int* n, const int* nrhs, double* a, const int* lda, double* b,
            const int* ldb, int* info);
void dsyevd_(const char* jobz, const char* uplo, const int* n, double* a, const int* lda, double* w,
             double* work, const int* lwork, int* iwork, const int* liwork, int* info);
void dsygvd_(const int* itype, const char* jobz, const char* uplo, const int* n, double* a, const int* lda,
             double* b, const int* ldb, double* w, double* work, const int* lwork, int* iwork, const int* liwork,
             int* info);
void dgeev_(const char* jobvl, const char* jobvr, const int* n, double* a, const int* lda, double* wr, double* wi,
            double* vl, const int* ldvl, double* vr, const int* ldvr, double* work, const int* lwork, int* info);
void dtrmm_(const char* side, const char* uplo, const char* transa, const char* diag, const int* m, const int* n,
            const double* alpha, const double* a, const int* lda, double* b, const int* ldb);
void strmm_(const char* side, const char* uplo, const char* transa, const char* diag, const int* m, const int* n,
            const float* alpha, const float* a, const int* lda, float* b, const int* ldb);
void ssyrk_(const char* uplo, const char* trans, const int* n, const int* k, const float* alpha, const float* a,
            const int* lda, const float* beta, float* c, const int* ldc);
void dgemv_(const char* trans, const int* m, const int* n, const double* alpha, const double* a, const int* lda,
            const double* x, const int* incx, const double* beta, double* y, const int* incy);
void sgemv_(const char* trans, const int* m, const int* n, const float* alpha, const float* a, const int* lda,
            const float* x, const int* incx, const float* beta, float* y, const int* incy);
void dsyrk_(const char* uplo, const char* trans, const int* n, const int* k, const double* alpha,
            const double* a, const int* lda, const double* beta, double* c, const int* ldc);
}

namespace sgdstab::detail {

int symmetric_eigen(Eigen::MatrixXd& a, Eigen::VectorXd& evals) {
  const int n = static_cast<int>(a.rows());
  evals.resize(n);
  if (n == 0) return 0;
  int lwork = -1, liwork = -1, info = 0, iquery = 0;
  double wquery = 0;
  dsyevd_("V", "L", &n, a.data(), &n, evals.data(), &wquery, &lwork, &iquery, &liwork, &info);
  if (info != 0) return info;
  lwork = static_cast<int>(wquery) + 1;
  liwork = std::max(iquery, 1);
  std::vector<double> work(static_cast<std::size_t>(lwork));
  std::vector<int> iwork(static_cast<std::size_t>(liwork));
  dsyevd_("V", "L", &n, a.data(), &n, evals.data(), work.data(), &lwork, iwork.data(), &liwork,
          &info);
  return info;
}

void symmetric_eigen_or_throw(Eigen::MatrixXd& a, Eigen::VectorXd& evals, const std::string& what) {
  const int info = symmetric_eigen(a, evals);
  if (info != 0)
    throw numerical_error(what + ": LAPACK dsyevd failed (info = " + std::to_string(info) + ") on a " +
                          std::to_string(a.rows()) + " x " + std::to_string(a.cols()) + " matrix" +
                          (a.allFinite() ? "" : " with NaN or Inf entries"));
}

double dense_bytes(Eigen::Index m) { return 8.0 * 3.2 * static_cast<double>(m) * static_cast<double>(m); }


void trmm_lower_right(const Eigen::MatrixXd& a, const Eigen::MatrixXd& l, Eigen::MatrixXd& c) {
  const int m = static_cast<int>(a.rows()), n = static_cast<int>(l.rows());
  c.resize(m, n);
  if (m == 0 || n == 0) return;
  std::copy(a.data(), a.data() + a.size(), c.data());
  const double one = 1.0;
  const int ldc = std::max(m, 1);
  dtrmm_("R", "L", "N", "N", &m, &n, &one, l.data(), &n, c.data(), &ldc);
}

void trmm_lower_right(const Eigen::MatrixXf& a, const Eigen::MatrixXf& l, Eigen::MatrixXf& c) {
  const int m = static_cast<int>(a.rows()), n = static_cast<int>(l.rows());
  c.resize(m, n);
  if (m == 0 || n == 0) return;
  std::copy(a.data(), a.data() + a.size(), c.data());
  const float one = 1.0f;
  const int ldc = std::max(m, 1);
  strmm_("R", "L", "N", "N", &m, &n, &one, l.data(), &n, c.data(), &ldc);
}

void syrk_lower(bool transpose, double alpha, const float* a, Eigen::Index k, Eigen::Index r, Eigen::Index lda,
                Eigen::MatrixXf& c) {
  if (k == 0 || r == 0) return;
  const int ki = static_cast<int>(k), ri = static_cast<int>(r), ldai = static_cast<int>(lda);
  const int ldc = static_cast<int>(c.rows());
  const float one = 1.0f, af = static_cast<float>(alpha);
  if (transpose)
    ssyrk_("L", "T", &ri, &ki, &af, a, &ldai, &one, c.data(), &ldc);
  else
    ssyrk_("L", "N", &ki, &ri, &af, a, &ldai, &one, c.data(), &ldc);
}

void syrk_lower(bool transpose, double alpha, const double* a, Eigen::Index k, Eigen::Index r,
                Eigen::Index lda, Eigen::MatrixXd& c) {
  if (k == 0 || r == 0) return;
  const int ki = static_cast<int>(k), ri = static_cast<int>(r), ldai = static_cast<int>(lda);
  const int ldc = static_cast<int>(c.rows());
  const double one = 1.0;
  // BLAS: n = order of c, k = the other dimension of a.
  if (transpose)
    dsyrk_("L", "T", &ri, &ki, &alpha, a, &ldai, &one, c.data(), &ldc);
  else
    dsyrk_("L", "N", &ki, &ri, &alpha, a, &ldai, &one, c.data(), &ldc);
}

void symmetrize_from_lower(Eigen::MatrixXd& c) {
  const Eigen::Index r = c.rows();
  for (Eigen::Index j = 1; j < r; ++j)
    for (Eigen::Index i = 0; i < j; ++i) c(i, j) = c(j, i);
}

int cholesky_solve(Eigen::MatrixXd& a, Eigen::MatrixXd& b) {
  const int n = static_cast<int>(a.rows()), nrhs = static_cast<int>(b.cols());
  int info = 0;
  dposv_("L", &n, &nrhs, a.data(), &n, b.data(), &n, &info);
  return info;
}

void gemm(bool transpose_a, bool transpose_b, double alpha, const Eigen::MatrixXd& a, const Eigen::MatrixXd& b,
          double beta, Eigen::MatrixXd& c) {
  const int m = static_cast<int>(transpose_a ? a.cols() : a.rows());
  const int k = static_cast<int>(transpose_a ? a.rows() : a.cols());
  const int n = static_cast<int>(transpose_b ? b.rows() : b.cols());
  if (c.rows() != m || c.cols() != n) c.setZero(m, n);
  if (m == 0 || n == 0) return;
  const int lda = static_cast<int>(std::max<Eigen::Index>(1, a.rows()));
  const int ldb = static_cast<int>(std::max<Eigen::Index>(1, b.rows()));
  const int ldc = m;
  dgemm_(transpose_a ? "T" : "N", transpose_b ? "T" : "N", &m, &n, &k, &alpha, a.data(), &lda, b.data(), &ldb,
         &beta, c.data(), &ldc);
}

void gemv(bool transpose, Eigen::Index rows, Eigen::Index cols, double alpha, const double* a, Eigen::Index lda,
          const double* x, double beta, double* y) {
  const int m = static_cast<int>(rows), n = static_cast<int>(cols), ld = static_cast<int>(lda), one = 1;
  if (rows == 0 || cols == 0) {
    const Eigen::Index len = transpose ? cols : rows;
    for (Eigen::Index i = 0; i < len; ++i) y[i] = beta == 0.0 ? 0.0 : beta * y[i];
    return;
  }
  dgemv_(transpose ? "T" : "N", &m, &n, &alpha, a, &ld, x, &one, &beta, y, &one);
}

void gemv(bool transpose, Eigen::Index rows, Eigen::Index cols, float alpha, const float* a, Eigen::Index lda,
          const float* x, float beta, float* y) {
  const int m = static_cast<int>(rows), n = static_cast<int>(cols), ld = static_cast<int>(lda), one = 1;
  if (rows == 0 || cols == 0) {
    const Eigen::Index len = transpose ? cols : rows;
    for (Eigen::Index i = 0; i < len; ++i) y[i] = beta == 0.0F ? 0.0F : beta * y[i];
    return;
  }
  sgemv_(transpose ? "T" : "N", &m, &n, &alpha, a, &ld, x, &one, &beta, y, &one);
}

namespace {
// dgemm_ or sgemm_ on raw column-major storage.
template <class T, class Blas>
void gemm_raw(Blas blas, bool transpose_a, bool transpose_b, Eigen::Index m, Eigen::Index n, Eigen::Index k, T alpha,
              const T* a, Eigen::Index lda, const T* b, Eigen::Index ldb, T beta, T* c, Eigen::Index ldc) {
  const int mi = static_cast<int>(m), ni = static_cast<int>(n), ki = static_cast<int>(k);
  const int la = static_cast<int>(lda), lb = static_cast<int>(ldb), lc = static_cast<int>(ldc);
  blas(transpose_a ? "T" : "N", transpose_b ? "T" : "N", &mi, &ni, &ki, &alpha, a, &la, b, &lb, &beta, c, &lc);
}
}  // namespace

void gemm(bool transpose_a, bool transpose_b, Eigen::Index m, Eigen::Index n, Eigen::Index k, double alpha,
          const double* a, Eigen::Index lda, const double* b, Eigen::Index ldb, double beta, double* c,
          Eigen::Index ldc) {
  gemm_raw(dgemm_, transpose_a, transpose_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void gemm(bool transpose_a, bool transpose_b, Eigen::Index m, Eigen::Index n, Eigen::Index k, float alpha,
          const float* a, Eigen::Index lda, const float* b, Eigen::Index ldb, float beta, float* c,
          Eigen::Index ldc) {
  gemm_raw(sgemm_, transpose_a, transpose_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void small_symmetric_eigen(const Eigen::MatrixXd& a, Eigen::VectorXd& w, Eigen::MatrixXd& v) {
  v = a;
  if (symmetric_eigen(v, w) != 0)  // dsyevd fails only on NaN input or not converging (never seen)
    throw numerical_error("LAPACK dsyevd failed on a " + std::to_string(a.rows()) + " x " +
                          std::to_string(a.rows()) + " symmetric matrix");
}

bool small_generalized_symmetric_eigen(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b, Eigen::VectorXd& w,
                                       Eigen::MatrixXd& v) {
  const int n = static_cast<int>(a.rows());
  Eigen::MatrixXd vv = a, bb = b;
  Eigen::VectorXd ww(n);
  if (n > 0) {
    const int itype = 1;  // a x = w b x
    int lwork = -1, liwork = -1, info = 0, iquery = 0;
    double wquery = 0;
    dsygvd_(&itype, "V", "L", &n, vv.data(), &n, bb.data(), &n, ww.data(), &wquery, &lwork, &iquery, &liwork,
            &info);
    if (info != 0) return false;
    lwork = static_cast<int>(wquery) + 1;
    liwork = std::max(iquery, 1);
    std::vector<double> work(static_cast<std::size_t>(lwork));
    std::vector<int> iwork(static_cast<std::size_t>(liwork));
    dsygvd_(&itype, "V", "L", &n, vv.data(), &n, bb.data(), &n, ww.data(), work.data(), &lwork, iwork.data(),
            &liwork, &info);
    if (info != 0) return false;  // info > n: b not positive definite
  }
  w = std::move(ww);
  v = std::move(vv);
  return true;
}

bool general_eigenvalues(const Eigen::MatrixXd& a, Eigen::VectorXcd& values) {
  const int n = static_cast<int>(a.rows());
  values.resize(n);
  if (n == 0) return true;
  Eigen::MatrixXd m = a;
  std::vector<double> wr(static_cast<std::size_t>(n)), wi(static_cast<std::size_t>(n));
  int lwork = -1, info = 0, one = 1;
  double wquery = 0, dummy = 0;
  dgeev_("N", "N", &n, m.data(), &n, wr.data(), wi.data(), &dummy, &one, &dummy, &one, &wquery, &lwork, &info);
  if (info != 0) return false;
  lwork = std::max(static_cast<int>(wquery) + 1, 3 * n);
  std::vector<double> work(static_cast<std::size_t>(lwork));
  dgeev_("N", "N", &n, m.data(), &n, wr.data(), wi.data(), &dummy, &one, &dummy, &one, work.data(), &lwork, &info);
  if (info != 0) return false;  // the QR algorithm did not converge
  for (int i = 0; i < n; ++i) values(i) = {wr[static_cast<std::size_t>(i)], wi[static_cast<std::size_t>(i)]};
  return true;
}

}  // namespace sgdstab::detail
