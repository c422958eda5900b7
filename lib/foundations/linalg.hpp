#pragma once
// Internal: thin wrappers over BLAS/LAPACK for the few kernels where Eigen's
// own implementation is several times slower on this project's machines
// (measured: Eigen 3.4 dense GEMM ~65 GFLOP/s vs OpenBLAS ~100 GFLOP/s on 2
// cores; Eigen's SelfAdjointEigenSolver 80 s vs LAPACK dsyevd 8.5 s at n = 4096).
#include <Eigen/Core>
#include <string>

namespace sgdstab::detail {

/// Full symmetric eigendecomposition (LAPACK dsyevd, divide and conquer).
/// On return `evals` is ascending and `a` holds the orthonormal eigenvectors.
/// Only the lower triangle of `a` is read. Returns LAPACK's info (0 = success).
int symmetric_eigen(Eigen::MatrixXd& a, Eigen::VectorXd& evals);
/// The same, ascending; \throws sgdstab::numerical_error naming `what` when LAPACK fails.
void symmetric_eigen_or_throw(Eigen::MatrixXd& a, Eigen::VectorXd& evals, const std::string& what);
/// Bytes of a dense symmetric eigendecomposition of an m x m matrix (the
/// matrix, its eigenvectors and dsyevd's work).
double dense_bytes(Eigen::Index m);

/// Small dense problems (Rayleigh-Ritz matrices, the c x c per-sample
/// blocks) by LAPACK (dsyevd, dsygvd): Eigen's own solvers cost 6-10 s of
/// compile time in every unit that instantiates one, and are slower.
/// Ascending eigenvalues `w`, eigenvectors as the columns of `v`; the lower
/// triangles are read. \throws sgdstab::numerical_error when dsyevd fails.
void small_symmetric_eigen(const Eigen::MatrixXd& a, Eigen::VectorXd& w, Eigen::MatrixXd& v);
/// The pencil a x = w b x (b positive definite; eigenvectors b-orthonormal).
/// Returns false when b is not positive definite (nothing written).
bool small_generalized_symmetric_eigen(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b, Eigen::VectorXd& w,
                                       Eigen::MatrixXd& v);
/// Eigenvalues of a general real square matrix (LAPACK dgeev, no vectors),
/// in no particular order. Returns false when the QR algorithm fails.
bool general_eigenvalues(const Eigen::MatrixXd& a, Eigen::VectorXcd& values);

/// c = a * L with L the lower triangle of l, diagonal included (upper part not
/// read): BLAS dtrmm on a copy of a, half the flops of a general product.
void trmm_lower_right(const Eigen::MatrixXd& a, const Eigen::MatrixXd& l, Eigen::MatrixXd& c);
/// The same in single precision (BLAS strmm).
void trmm_lower_right(const Eigen::MatrixXf& a, const Eigen::MatrixXf& l, Eigen::MatrixXf& c);

/// Rank-k update of the lower triangle of c, a being k x r (leading dimension lda):
/// transpose = true:  c (r x r) += alpha a^T a;   transpose = false: c (k x k) += alpha a a^T.
void syrk_lower(bool transpose, double alpha, const double* a, Eigen::Index k, Eigen::Index r,
                Eigen::Index lda, Eigen::MatrixXd& c);
/// The same in single precision (BLAS ssyrk; alpha rounded to float).
void syrk_lower(bool transpose, double alpha, const float* a, Eigen::Index k, Eigen::Index r, Eigen::Index lda,
                Eigen::MatrixXf& c);

/// Solves a x = b for symmetric positive definite a (LAPACK dposv; lower
/// triangle read, a overwritten by its Cholesky factor, b by x). Returns
/// LAPACK's info: 0 = success, > 0 = a is not positive definite.
int cholesky_solve(Eigen::MatrixXd& a, Eigen::MatrixXd& b);

/// c = alpha op(a) op(b) + beta c (BLAS dgemm); c is resized (and zeroed) when
/// its shape does not match.
void gemm(bool transpose_a, bool transpose_b, double alpha, const Eigen::MatrixXd& a, const Eigen::MatrixXd& b,
          double beta, Eigen::MatrixXd& c);

/// c (m x n) = alpha op(a) op(b) + beta c on raw column-major storage (BLAS dgemm).
void gemm(bool transpose_a, bool transpose_b, Eigen::Index m, Eigen::Index n, Eigen::Index k, double alpha,
          const double* a, Eigen::Index lda, const double* b, Eigen::Index ldb, double beta, double* c,
          Eigen::Index ldc);
/// The same in single precision (BLAS sgemm).
void gemm(bool transpose_a, bool transpose_b, Eigen::Index m, Eigen::Index n, Eigen::Index k, float alpha,
          const float* a, Eigen::Index lda, const float* b, Eigen::Index ldb, float beta, float* c, Eigen::Index ldc);

/// y = alpha op(a) x + beta y (BLAS dgemv) for a column-major rows x cols
/// matrix with leading dimension lda; op(a) = a^T when transpose.
void gemv(bool transpose, Eigen::Index rows, Eigen::Index cols, double alpha, const double* a, Eigen::Index lda,
          const double* x, double beta, double* y);

/// The same in single precision (BLAS sgemv).
void gemv(bool transpose, Eigen::Index rows, Eigen::Index cols, float alpha, const float* a, Eigen::Index lda,
          const float* x, float beta, float* y);

/// Copies the lower triangle of c onto its upper triangle.
void symmetrize_from_lower(Eigen::MatrixXd& c);

}  // namespace sgdstab::detail
