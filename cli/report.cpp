#include "report.hpp"

#include <cmath>

#include <ostream>

#include "exit_codes.hpp"
#include "sgdstab/adaptive.hpp"
#include "sgdstab/machine.hpp"

namespace sgdstab::cli {

void report_fields(json& j, const SolveReport& r) {
  j["converged"] = r.converged();
  j["status"] = to_string(r.status);
  j["matvecs"] = r.matvecs;
  j["matvecs_single_precision"] = r.single_precision_matvecs;
  j["iterations"] = r.iterations;
  j["residual"] = r.residual;
  j["error_bound"] = std::isnan(r.error_bound) ? json(nullptr) : json(r.error_bound);
  j["method"] = to_string(r.method);
  j["device"] = to_string(r.device);
  j["message"] = r.message;
}

void geometry_fields(json& j, const GeometrySummary& g) {
  j["samples"] = g.samples;
  j["outputs"] = g.outputs;
  j["params"] = g.params > 0 ? json(g.params) : json(nullptr);
  j["rank"] = g.rank;
}

void hessian_fields(json& j, const GeometrySummary& g) {
  j["eta_gd"] = 2.0 / g.lambda_max;
  j["lambda_max"] = g.lambda_max;
  j["hessian_frobenius"] = g.hessian_frobenius;
  j["hessian_trace"] = g.hessian_trace;
}

json curve_point(Index batch, double eta_star, const SolveReport& report, const std::pair<double, double>* bracket) {
  json p;
  p["batch"] = batch;
  p["eta_star"] = eta_star;
  if (bracket) {
    p["eta_low"] = bracket->first;
    p["eta_high"] = bracket->second;
  }
  p["converged"] = report.converged();
  p["status"] = to_string(report.status);
  p["matvecs"] = report.matvecs;
  p["method"] = to_string(report.method);
  p["device"] = to_string(report.device);
  p["error_bound"] = std::isnan(report.error_bound) ? json(nullptr) : json(report.error_bound);
  return p;
}

json curve_json(const Geometry& g, const std::vector<ThresholdResult>& curve, double weight_decay) {
  json j;
  j["sampling"] = to_string(curve.front().sampling);
  j["weight_decay"] = weight_decay;
  geometry_fields(j, g);
  hessian_fields(j, g);
  j["eta_gd"] = 2.0 / (g.lambda_max() + weight_decay);  // GD with weight decay (theory/weight_decay.md, section 3)
  json pts = json::array();
  // Where the applications ran: one device for all points, or "cpu+cuda"
  // when some were small enough for the dense CPU method.
  std::string device = to_string(curve.front().report.device);
  for (const ThresholdResult& r : curve) {
    pts.push_back(curve_point(r.batch, r.eta_star, r.report));
    if (to_string(r.report.device) != device) device = "cpu+cuda";
  }
  j["device"] = device;
  j["points"] = pts;
  j["loss_convention"] = kLossConvention;
  return j;
}

json region_json(const StabilityRegion& region) {
  json j;
  j["samples"] = region.samples;
  j["outputs"] = region.outputs;
  j["rank"] = region.rank;
  j["lambda_max"] = region.lambda_max;
  j["eta_gd"] = region.eta_gd;
  j["momentum"] = region.momentum.beta;
  j["weight_decay"] = region.weight_decay;
  j["nesterov"] = region.momentum.nesterov;
  if (region.momentum.beta > 0.0 || region.adam) j["eta_mean"] = region.eta_mean;
  if (region.decoupled_weight_decay) j["weight_decay_decoupled"] = true;
  j["matvecs"] = region.report.matvecs;
  j["matvecs_single_precision"] = region.report.single_precision_matvecs;
  j["seconds"] = region.report.seconds;
  json curves = json::array();
  for (const RegionCurve& curve : region.curves) {
    json pts = json::array();
    for (const RegionPoint& p : curve.points) {
      json q;
      q["batch"] = p.batch;
      q["eta_star"] = p.eta_star;
      q["eta_low"] = p.eta_low;
      q["eta_high"] = p.eta_high;
      q["converged"] = p.converged();
      q["status"] = to_string(p.status());
      q["method"] = to_string(p.report.method);
      q["matvecs"] = p.report.matvecs;
      pts.push_back(q);
    }
    curves.push_back({{"sampling", to_string(curve.sampling)}, {"points", pts}});
  }
  j["curves"] = curves;
  j["converged"] = region.converged();
  j["status"] = to_string(region.status());
  j["method"] = to_string(region.report.method);
  j["device"] = to_string(region.report.device);
  j["subspace_dimension"] = region.subspace_dimension;
  j["restarts"] = region.report.iterations;
  j["apply_seconds"] = region.report.apply_seconds;
  j["message"] = region.report.message;
  j["loss_convention"] = kLossConvention;
  return j;
}

Status curve_status(const std::vector<ThresholdResult>& curve) {
  Status status = Status::converged;
  for (const ThresholdResult& r : curve) status = combine(status, r.status());
  return status;
}

json bounds_json(const StabilityBounds& b) {
  json j;
  j["batch"] = b.batch;
  j["sampling"] = to_string(b.sampling);
  j["gamma"] = b.gamma;
  j["eta_star"] = b.eta_star;
  j["converged"] = b.converged();
  j["status"] = to_string(b.status());
  if (!b.converged()) j["message"] = b.report.message;
  j["eta_gd"] = b.eta_gd;
  j["eta_sufficient"] = b.eta_sufficient;
  j["eta_necessary_rank1"] = b.eta_necessary_rank1;
  j["eta_necessary_trace"] = b.eta_necessary_trace;
  j["eta_alignment"] = b.eta_alignment ? json(*b.eta_alignment) : json(nullptr);
  j["eta_trace_b1"] = b.eta_trace_b1 ? json(*b.eta_trace_b1) : json(nullptr);
  j["mu_star"] = b.mu_star;
  j["escape_factor_at_eta_star"] = b.escape_factor(b.eta_star);
  j["sharpness"] = b.sharpness;
  j["non_uniformity"] = b.non_uniformity;
  j["hessian_frobenius"] = b.hessian_frobenius;
  j["hessian_trace"] = b.hessian_trace;
  return j;
}


void minimum_fields(json& j, const Problem& p, const MinimizeResult& res) {
  const MlpSpec& s = p.model.spec();
  json model;
  model["widths"] = s.widths;
  json acts = json::array();
  for (Index l = 1; l < s.layers(); ++l) acts.push_back(to_string(s.activation(l)));
  model["activations"] = acts;
  model["bias"] = s.bias;
  json trainable = json::array();
  for (Index l = 1; l <= s.layers(); ++l) trainable.push_back(s.is_trainable(l));
  model["trainable"] = trainable;
  model["parametrization"] = to_string(s.parametrization);
  model["init"] = to_string(s.init);
  model["output_scale"] = s.output_scale;
  j["model"] = model;
  j["seed"] = p.seed;
  j["data"] = p.data.description;
  j["samples"] = p.data.samples();
  j["outputs"] = p.data.outputs();
  j["params"] = p.model.num_parameters();
  j["trainer"] = res.method;
  minimizer_fields(j, res, "iterations");
  if (!p.trainer_options.is_null()) j["options"] = p.trainer_options;
  j["gradient_norm"] = res.gradient_norm;
  j["loss_convention"] = kLossConvention;
}

void minimizer_fields(json& j, const MinimizeResult& res, const char* iterations_key) {
  j["converged"] = res.converged();
  j["status"] = to_string(res.status());
  j[iterations_key] = res.report.iterations;
  j["loss"] = res.loss;
  j["max_residual"] = res.max_residual;
  j["residual_tolerance"] = res.tolerance;
  j["message"] = res.report.message;
}


json performance_json() {
  const MachineInfo m = machine_info();
  json p;
  p["cpu"] = m.cpu;
  p["logical_cpus"] = m.logical_cpus;
  p["library_threads"] = m.library_threads;
  p["blas"] = m.blas;
  p["blas_core"] = m.blas_core;
  p["blas_threads"] = m.blas_threads;
  p["openblas_coretype"] = m.openblas_coretype.empty() ? json(nullptr) : json(m.openblas_coretype);
  return p;
}

void print_result(const json& j, std::ostream& out) {
  json o = j;
  o["performance"] = performance_json();
  out << o.dump(2) << "\n";
}

int finish(const json& j, Status status, std::ostream& out, std::ostream& err) {
  print_result(j, out);
  if (status != Status::converged)
    err << "sgdstab: the eigensolver did not converge (status " << to_string(status)
        << "); the numbers above are not to be trusted\n";
  return exit_code(status);
}

int not_a_minimum(const json& j, std::ostream& out, std::ostream& err, const MinimizeResult& res) {
  print_result(j, out);
  err << "sgdstab: no interpolating minimum reached (" << res.report.message << "; max residual " << res.max_residual
      << " > tolerance " << res.tolerance << ")\n";
  return exit_code(res.status());
}

json cross_check_json(const CrossCheckOptions& o, const CrossCheckReport& rep) {
  json j;
  j["lr"] = o.lr;
  j["batch"] = o.batch;
  j["sampling"] = to_string(o.schedule);
  j["momentum"] = o.momentum.beta;
  j["nesterov"] = o.momentum.nesterov;
  j["weight_decay"] = o.weight_decay;
  if (o.decoupled_weight_decay > 0.0) j["decoupled_weight_decay"] = o.decoupled_weight_decay;  // in this lr's units
  j["steps"] = o.steps;
  j["trajectories"] = o.trajectories;
  j["rho"] = rep.rho ? json(*rep.rho) : json(nullptr);
  j["eta_star"] = rep.eta_star ? json(*rep.eta_star) : json(nullptr);
  j["exact"] = rep.rho ? json(rep.exact.squared_norm) : json(nullptr);
  json mean = json::array(), low = json::array(), high = json::array(), median = json::array(), logm = json::array();
  for (const MomentEstimate& e : rep.simulation.squared_norm) {
    mean.push_back(e.mean);
    low.push_back(e.ci_low);
    high.push_back(e.ci_high);
    median.push_back(e.median);
    logm.push_back(e.mean_log);
  }
  j["mc_mean"] = mean;
  j["mc_ci_low"] = low;
  j["mc_ci_high"] = high;
  j["mc_median"] = median;
  j["mc_mean_log"] = logm;
  j["confidence"] = o.confidence;
  j["status"] = to_string(rep.status());
  j["rho_hat"] = rep.radius.rho_hat;
  j["rho_hat_ci_low"] = rep.radius.ci_low;
  j["rho_hat_ci_high"] = rep.radius.ci_high;
  j["rho_hat_blocks"] = rep.radius.blocks;
  j["rho_hat_steps_per_block"] = rep.radius.steps_per_block;
  j["verdict"] = to_string(rep.verdict);
  j["reason"] = rep.reason;
  j["note"] = "quantities are |delta_t|^2 in range(H), E|delta_0|^2 = 1; above the threshold the sample mean is "
              "heavy-tailed and underestimates the true moment at long horizons (see mc_median, mc_mean_log, "
              "and rho_hat, which does not compound)";
  j["seconds"] = rep.simulation.report.seconds;
  j["options"] = options_json(o);
  return j;
}

json adam_l2_cross_check_json(const CrossCheckOptions& o, const CrossCheckReport& rep, double beta1) {
  json j = cross_check_json(o, rep);
  j["momentum"] = beta1;  // the heavy-ball beta at heavy_ball_lr, as the other Adam and L2 results report it
  j["heavy_ball_lr"] = adam_heavy_ball_lr(o.lr, beta1);
  j["note"] = "quantities are |phi_t|^2 on the whole parameter space, phi = P^{1/2} theta, E|phi_0|^2 = 1; above the "
              "threshold the sample mean is heavy-tailed and underestimates the true moment at long horizons (see "
              "mc_median, mc_mean_log, and rho_hat, which does not compound)";
  return j;
}

}  // namespace sgdstab::cli
