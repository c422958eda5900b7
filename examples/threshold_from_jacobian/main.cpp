// eta*(B) for a user-supplied Jacobian, linking sgdstab through find_package.
//
//   threshold_from_jacobian JACOBIAN.csv|.npy OUTPUTS BATCH
//
// JACOBIAN has n*OUTPUTS rows (row i*C + k = d f_k(x_i) / d theta) and p columns,
// taken at an interpolating minimum of the square loss.
#include <cstdlib>
#include <iostream>
#include <sgdstab/sgdstab.hpp>

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: " << argv[0] << " JACOBIAN OUTPUTS BATCH\n";
    return 2;
  }
  try {
    const Eigen::MatrixXd J = sgdstab::read_matrix(argv[1]);
    const auto geometry = sgdstab::Geometry::from_jacobian(J, std::atol(argv[2]));
    const sgdstab::Index batch = std::atol(argv[3]);
    const auto result = sgdstab::stability_threshold(geometry, batch);  // without replacement
    if (!result.converged()) {
      std::cerr << "not converged: " << result.report.message << "\n";
      return 3;
    }
    std::cout << "n = " << geometry.samples() << ", rank = " << geometry.rank()
              << ", lambda_max(H) = " << geometry.lambda_max() << "\n"
              << "eta*(B = " << batch << ") = " << result.eta_star
              << "   (GD limit 2/lambda_max = " << 2.0 / geometry.lambda_max() << ", "
              << result.report.matvecs << " operator applications, "
              << sgdstab::to_string(result.report.method) << ")\n";
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
