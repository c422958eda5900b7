#pragma once
// What the `sgdstab cnn` commands share (theory/cnn.md): the data set and
// architecture named by the options, training with checkpoints and the
// alignment log, loading and saving parameters, and their JSON fields.
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <ostream>
#include <string>
#include <vector>

#include "args.hpp"
#include "report.hpp"
#include "sgdstab/cnn.hpp"
#include "sgdstab/data.hpp"
#include "sgdstab/minimize.hpp"

namespace sgdstab::cli {

using Clock = std::chrono::steady_clock;
/// Seconds since t0.
double since(Clock::time_point t0);

/// The data set (--data, --classes, --per-class, --scaling) and the network
/// (--arch, --hidden) of a cnn command.
struct CnnProblem {
  Dataset data;
  cnn::CnnSpec spec;
};
CnnProblem cnn_problem(const Args& args);

/// "--lrs 0.1,0.2": positive numbers.
std::vector<double> number_list(const std::string& text, const std::string& what);
/// --device (auto, cpu, cuda), resolved against what LibTorch reports.
torch::Device device_option(const Args& args);
/// --gram-chunk and --gram-memory.
cnn::GramOptions gram_options(const Args& args);
/// --sampling, --max-steps, --residual-tol and --seed for a run at (lr, batch).
cnn::CnnTrainOptions train_options(const Args& args, double lr, Index batch);

/// data, samples, outputs, params, arch, device.
json problem_fields(const CnnProblem& p, const cnn::Cnn& net, const torch::Device& device);
/// converged, status, steps, loss, max_residual, residual_tolerance, message, loss_convention.
void result_fields(json& j, const MinimizeResult& res);
/// The Gram's streaming report.
json gram_json(const cnn::GramInfo& gi, double seconds, Index samples);

/// The residual vector (f - y, rows i*c + k) at the network's parameters.
Eigen::VectorXd residual_vector(const cnn::Cnn& net, const Dataset& d);

/// The alignment log of one training run: step, loss, mu, |G|_F every
/// `every` steps (theory/cnn.md, section 8), and the smallest mu seen.
struct AlignmentLog {
  const CnnProblem& p;
  cnn::GramOptions gram;
  Index every = 0;
  std::string text = "step,loss,mu,g_frobenius\n";
  double mu_min = NAN;
  Index last = -1;
  void record(Index step, const cnn::Cnn& at);
  /// The last step of the run too (the point reached), when not on the cadence.
  void record_final(Index step, const cnn::Cnn& at);
};

/// --log-every K (>= 1, default 10).
Index log_every_option(const Args& args);

/// Training with the options' extras: --init-params, progress on stderr,
/// --checkpoint FILE every --checkpoint-every steps, --alignment-log FILE every
/// --log-every steps. The paths written go to `files`.
MinimizeResult train(const Args& args, const CnnProblem& p, cnn::Cnn& net, cnn::CnnTrainOptions o, json& files,
                     std::ostream& err);
/// Parameters from --params (no training): the result describes them.
MinimizeResult load_params(const Args& args, const CnnProblem& p, cnn::Cnn& net);
/// --save-params (never non-finite ones), --save-jacobian, --save-gram (`gram` when already computed).
void save_outputs(const Args& args, const cnn::Cnn& net, const Dataset& d, const Eigen::MatrixXd* gram, json& files);

}  // namespace sgdstab::cli
