// The seed paper's central picture (Wu, Wang & Su, NeurIPS 2022) on CPU-sized
// problems: train with SGD over a grid of (lr, B), and at every minimum SGD
// reaches record |H|_F, the worst-case alignment mu_*, the exact eta*(B) and
// the training lr. Theory: lr <= eta*(B) (SGD can only stay at stable minima)
// and |H|_F <= 1 / (lr sqrt(gamma mu_*)) (the alignment bound).
//
// usage: alignment_flatness [OUT.csv]   (default alignment_flatness.csv)
// Fashion-MNIST rows need the Debian package dataset-fashion-mnist; they are
// skipped (with a message) when it is missing.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "sgdstab/sgdstab.hpp"

namespace {

struct Problem {
  std::string name;
  sgdstab::MlpSpec spec;
  Eigen::MatrixXd x, y;
};

std::vector<Problem> problems() {
  std::vector<Problem> out;
  Problem teacher;
  teacher.name = "teacher-tanh";
  teacher.spec.widths = {10, 64, 1};
  teacher.spec.activations = {sgdstab::Activation::tanh};
  teacher.spec.init = sgdstab::Init::lecun;
  teacher.x = sgdstab::gaussian_inputs(32, 10, 11);
  teacher.y = sgdstab::teacher_targets(teacher.spec, teacher.x, 12);
  out.push_back(teacher);
  try {
    const auto images = sgdstab::read_fashion_mnist(sgdstab::find_fashion_mnist_directory(), true);
    const auto data = sgdstab::select_classes(images, {{0, 1}, 16}, sgdstab::PixelScaling::unit, "fashion-mnist");
    Problem fm;
    fm.name = "fashion-mnist-2x16";
    fm.spec.widths = {784, 128, 2};
    fm.spec.activations = {sgdstab::Activation::relu};
    fm.spec.bias = true;
    fm.x = data.inputs;
    fm.y = data.targets;
    out.push_back(fm);
  } catch (const sgdstab::io_error& e) {
    std::fprintf(stderr, "skipping Fashion-MNIST: %s\n", e.what());
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) try {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const std::string path = argc > 1 ? argv[1] : "alignment_flatness.csv";
  std::ofstream csv(path + ".tmp");
  csv << "problem,lr,batch,outcome,steps,hessian_frobenius,sharpness,mu_star,gamma,eta_star,lr_over_eta_star,"
         "frobenius_bound,frobenius_over_bound,eta_alignment,eta_sufficient\n";
  std::printf("%-20s %7s %4s %-9s %7s %9s %7s %9s %9s %9s\n", "problem", "lr", "B", "outcome", "steps", "|H|_F",
              "mu*", "lr/eta*", "|H|_F/bd", "eta_al/eta*");
  int violations = 0;
  for (const Problem& p : problems()) {
    sgdstab::Mlp init(p.spec, 3);
    // Learning rates relative to the threshold of the Gauss-Newton matrix at
    // initialization (where training starts), per batch size.
    const auto g0 = sgdstab::geometry_at_minimum(init, p.x, p.y, {1e-10, true});
    for (sgdstab::Index b : {1, 4, 16})
      for (double f : {0.3, 0.6, 0.9}) {
        sgdstab::Mlp net = init;
        sgdstab::TrainOptions o;
        o.lr = f * sgdstab::stability_threshold(g0, b).eta_star;
        o.batch = b;
        o.max_steps = 50000;
        o.residual_tolerance = 1e-3;  // then polished by Gauss-Newton below
        o.seed = 1;
        const auto run = sgdstab::train_sgd(net, p.x, p.y, o);
        std::string outcome = run.converged() ? "minimum" : (run.status() == sgdstab::Status::diverged ? "diverged" : "budget");
        if (!run.converged()) {
          std::printf("%-20s %7.4f %4ld %-9s %7ld\n", p.name.c_str(), o.lr, static_cast<long>(b), outcome.c_str(),
                      static_cast<long>(run.report.iterations));
          csv << p.name << "," << o.lr << "," << b << "," << outcome << "," << run.report.iterations << ",,,,,,,,,,\n";
          continue;
        }
        // Polish the SGD point to an interpolating minimum (Gauss-Newton moves it by about
        // the remaining residual, 1e-3 of the label scale).
        const auto polish = sgdstab::gauss_newton(net, p.x, p.y);
        if (!polish.converged()) outcome = "no-polish";
        const auto g = sgdstab::geometry_at_minimum(net, p.x, p.y, {1e-10, !polish.converged()});
        const auto bd = sgdstab::stability_bounds(g, b);
        const double frob_bound = bd.gamma * bd.mu_star > 0 ? 1.0 / (o.lr * std::sqrt(bd.gamma * bd.mu_star)) : INFINITY;
        const double ratio = o.lr / bd.eta_star;
        if (ratio > 1.0 + 1e-6 || bd.hessian_frobenius > frob_bound) ++violations;
        std::printf("%-20s %7.4f %4ld %-9s %7ld %9.4g %7.4f %9.4f %9.4f %9.3f\n", p.name.c_str(), o.lr,
                    static_cast<long>(b), outcome.c_str(), static_cast<long>(run.report.iterations), bd.hessian_frobenius,
                    bd.mu_star, ratio, bd.hessian_frobenius / frob_bound,
                    bd.eta_alignment ? *bd.eta_alignment / bd.eta_star : INFINITY);
        csv.precision(10);
        csv << p.name << "," << o.lr << "," << b << "," << outcome << "," << run.report.iterations << ","
            << bd.hessian_frobenius << "," << bd.sharpness << "," << bd.mu_star << "," << bd.gamma << ","
            << bd.eta_star << "," << ratio << "," << frob_bound << "," << bd.hessian_frobenius / frob_bound << ","
            << (bd.eta_alignment ? *bd.eta_alignment : INFINITY) << "," << bd.eta_sufficient << "\n";
      }
  }
  csv.close();
  if (std::rename((path + ".tmp").c_str(), path.c_str()) != 0) throw std::runtime_error("cannot write " + path);
  std::printf("wrote %s; minima violating lr <= eta*(B) or |H|_F <= 1/(lr sqrt(gamma mu*)): %d\n", path.c_str(),
              violations);
  return violations == 0 ? 0 : 5;
} catch (const std::exception& e) {
  std::fprintf(stderr, "alignment_flatness: %s\n", e.what());
  return 1;
}
