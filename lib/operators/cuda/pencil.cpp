// The pencil's R on a CUDA GPU through cuBLAS (theory/gpu.md); compiled only
// with SGDSTAB_HAVE_CUDA.
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "operators/cuda/cuda_api.hpp"
#include "operators/cuda_backend.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/memory.hpp"
#include "sgdstab/moment_operator.hpp"

namespace sgdstab::detail {
namespace {

// The runtime and cuBLAS, opened at the first GPU use (lib/operators/cuda/cuda_api.cpp);
// require_device and resolve_device have checked that the runtime opens.
const cuda::Runtime& rt() {
  std::string why;
  const cuda::Runtime* r = cuda::runtime(&why);
  if (r == nullptr) throw sgdstab::invalid_argument("device cuda: " + why);
  return *r;
}

const cuda::Blas& blas() {
  std::string why;
  const cuda::Blas* b = cuda::blas(&why);
  if (b == nullptr) throw sgdstab::invalid_argument("device cuda: " + why);
  return *b;
}

void check_cuda(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  const std::string msg = std::string("CUDA: ") + what + ": " + rt().GetErrorString(e);
  rt().GetLastError();
  if (e == cudaErrorMemoryAllocation) throw resource_error(msg);
  throw numerical_error(msg);
}

void check_cublas(cublasStatus_t s, const char* what) {
  if (s == CUBLAS_STATUS_SUCCESS) return;
  const std::string msg = std::string("cuBLAS: ") + what + " failed (status " + std::to_string(static_cast<int>(s)) + ")";
  if (s == CUBLAS_STATUS_ALLOC_FAILED) throw resource_error(msg);
  throw numerical_error(msg);
}

// A device array of doubles, freed on scope exit.
class DeviceArray {
 public:
  explicit DeviceArray(std::size_t count) {
    check_cuda(rt().Malloc(reinterpret_cast<void**>(&p_), count * sizeof(double)),
               ("allocating " + format_bytes(8.0 * static_cast<double>(count))).c_str());
  }
  ~DeviceArray() { rt().Free(p_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  double* get() const { return p_; }

 private:
  double* p_ = nullptr;
};

class GpuPencil {
 public:
  explicit GpuPencil(const Geometry& g)
      : nc_(static_cast<int>(g.factor().rows())), r_(static_cast<int>(g.rank())), c_(static_cast<int>(g.outputs())),
        n_(static_cast<int>(g.samples())), z_(static_cast<std::size_t>(nc_) * r_), zs_(z_count()), u_(z_count()),
        s_(static_cast<std::size_t>(r_) * r_), out_(static_cast<std::size_t>(r_) * r_),
        blocks_(static_cast<std::size_t>(n_) * c_ * c_), w_(r_, r_), hs_(r_, r_) {
    check_cublas(blas().Create(&handle_), "cublasCreate");
    check_cuda(rt().Memcpy(z_.get(), g.factor().data(), z_count() * sizeof(double), cudaMemcpyHostToDevice),
               "copying Z to the device");
    const Eigen::VectorXd& d = g.hessian_eigenvalues();
    for (int l = 0; l < r_; ++l)
      for (int k = 0; k < r_; ++k) w_(k, l) = 1.0 / std::sqrt(d(k) + d(l));
  }
  ~GpuPencil() { blas().Destroy(handle_); }
  GpuPencil(const GpuPencil&) = delete;
  GpuPencil& operator=(const GpuPencil&) = delete;

  // y = W o D(W o S), packed; D(Y) = (1/n) sum_i Z_i^T (Z_i Y Z_i^T) Z_i.
  void apply(const double* x, double* y) {
    const Index r = r_;
    hs_ = unpack(Eigen::Map<const Eigen::VectorXd>(x, packed_size(r)), r).cwiseProduct(w_);
    check_cuda(rt().Memcpy(s_.get(), hs_.data(), hs_.size() * sizeof(double), cudaMemcpyHostToDevice), "uploading S");
    const double one = 1.0, zero = 0.0;
    check_cublas(blas().Dgemm(handle_, CUBLAS_OP_N, CUBLAS_OP_N, nc_, r_, r_, &one, z_.get(), nc_, s_.get(), r_, &zero,
                             zs_.get(), nc_),
                 "Z S");
    // G_i = (Z S)_i Z_i^T (c x c), then U_i = G_i Z_i (c x r): rows i c .. of the n c x r arrays.
    check_cublas(blas().DgemmStridedBatched(handle_, CUBLAS_OP_N, CUBLAS_OP_T, c_, c_, r_, &one, zs_.get(), nc_, c_,
                                           z_.get(), nc_, c_, &zero, blocks_.get(), c_,
                                           static_cast<long long>(c_) * c_, n_),
                 "the c x c blocks");
    check_cublas(blas().DgemmStridedBatched(handle_, CUBLAS_OP_N, CUBLAS_OP_N, c_, r_, c_, &one, blocks_.get(), c_,
                                           static_cast<long long>(c_) * c_, z_.get(), nc_, c_, &zero, u_.get(), nc_,
                                           c_, n_),
                 "the blocks times Z_i");
    const double inv_n = 1.0 / static_cast<double>(n_);
    check_cublas(blas().Dgemm(handle_, CUBLAS_OP_T, CUBLAS_OP_N, r_, r_, nc_, &inv_n, z_.get(), nc_, u_.get(), nc_,
                             &zero, out_.get(), r_),
                 "Z^T U");
    check_cuda(rt().Memcpy(hs_.data(), out_.get(), hs_.size() * sizeof(double), cudaMemcpyDeviceToHost),
               "downloading the result");
    const Eigen::MatrixXd sym = 0.5 * (hs_ + hs_.transpose());
    Eigen::Map<Eigen::VectorXd>(y, packed_size(r)) = pack(sym.cwiseProduct(w_));
  }

 private:
  std::size_t z_count() const { return static_cast<std::size_t>(nc_) * r_; }
  int nc_, r_, c_, n_;
  cublasHandle_t handle_ = nullptr;
  DeviceArray z_, zs_, u_, s_, out_, blocks_;
  Eigen::MatrixXd w_, hs_;
};

}  // namespace

ApplyFn gpu_pencil_r(const Geometry& g) {
  if (g.factor().rows() > 2147483647 || g.rank() > 2147483647)
    throw resource_error("device cuda: the problem's dimensions exceed cuBLAS's int sizes");
  auto op = std::make_shared<GpuPencil>(g);
  return [op](const double* x, double* y) { op->apply(x, y); };
}

}  // namespace sgdstab::detail
