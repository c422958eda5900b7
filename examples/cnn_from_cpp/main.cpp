// The LibTorch module from C++ (find_package(sgdstab COMPONENTS cnn)): train
// a small VGG-style CNN by SGD on synthetic images, then ask the core solver
// whether SGD at that (lr, B) stays at the minimum it reached.
//
//   cnn_from_cpp [lr] [B]
#include <cstdio>
#include <cstdlib>

#include "sgdstab/cnn.hpp"
#include "sgdstab/sgdstab.hpp"

int main(int argc, char** argv) try {
  const double lr = argc > 1 ? std::atof(argv[1]) : 0.02;
  const sgdstab::Index batch = argc > 2 ? std::atol(argv[2]) : 2;
  const sgdstab::Index n = 8;
  const Eigen::MatrixXd images = sgdstab::gaussian_inputs(n, 64, 1);  // 1 x 8 x 8 images
  std::vector<int> labels;
  for (sgdstab::Index i = 0; i < n; ++i) labels.push_back(static_cast<int>(i % 2));
  const Eigen::MatrixXd targets = sgdstab::one_hot(labels, {0, 1});

  sgdstab::cnn::CnnSpec spec;
  spec.in_channels = 1;
  spec.height = spec.width = 8;
  spec.channels = {4};
  spec.hidden = {32};
  spec.outputs = 2;
  const auto device = sgdstab::cnn::torch_device(sgdstab::cnn::Device::automatic);
  sgdstab::cnn::Cnn net(spec, 1, device);
  sgdstab::cnn::CnnTrainOptions o;
  o.lr = lr;
  o.batch = batch;
  o.seed = 7;
  const sgdstab::MinimizeResult res = sgdstab::cnn::train_cnn(net, images, targets, o);
  std::printf("device %s, p = %lld, %s after %lld steps (max residual %.2e)\n", device.str().c_str(),
              static_cast<long long>(net.num_parameters()), res.report.message.c_str(), static_cast<long long>(res.report.iterations),
              res.max_residual);
  if (!res.converged()) return 1;
  const sgdstab::Geometry g = sgdstab::Geometry::from_gram(net.gram(images), 2);
  const sgdstab::ThresholdResult t = sgdstab::stability_threshold(g, batch);
  const sgdstab::RadiusResult r = sgdstab::spectral_radius(g, lr, batch);
  std::printf("|H|_F = %.4g, lambda_max = %.4g, eta*(%lld) = %.4g, rho(lr) = %.6f: SGD %s this minimum\n",
              g.hessian_frobenius(), g.lambda_max(), static_cast<long long>(batch), t.eta_star, r.rho,
              r.rho <= 1.0 ? "stays at" : "escapes");
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "cnn_from_cpp: %s\n", e.what());
  return 2;
}
