#pragma once
// Results -> JSON: the one place where the library's result structs become
// the JSON fields of the command line (docs/cli.md lists them per command).
#include <nlohmann/json.hpp>
#include <iosfwd>
#include <utility>
#include <variant>
#include <vector>

#include "problem.hpp"
#include "sgdstab/bounds.hpp"
#include "sgdstab/geometry.hpp"
#include "sgdstab/minimize.hpp"
#include "sgdstab/montecarlo.hpp"
#include "sgdstab/options.hpp"
#include "sgdstab/region.hpp"
#include "sgdstab/stability.hpp"

namespace sgdstab::cli {

using json = nlohmann::ordered_json;

/// The loss convention every result states.
inline constexpr const char* kLossConvention = "1/2 squared error, mean over samples";

/// converged, status, matvecs, iterations, residual, method, message.
void report_fields(json& j, const SolveReport& r);

/// The options in effect, echoed from S's table (include/sgdstab/options.hpp):
/// {key: value} for every field, in the table's order and units.
template <class S>
json options_json(const S& s) {
  json out = json::object();
  for (const OptionField<S>& f : option_table<S>())
    std::visit([&](const auto& v) { out[f.key] = v; }, f.get(s));
  return out;
}

/// j with the options in effect under "options".
template <class S>
json with_options(json j, const S& s) {
  j["options"] = options_json(s);
  return j;
}
/// What the JSON says of a geometry: from a Geometry, or from the
/// distributed one of sgdstab-mpi (which holds only its rows of Z).
struct GeometrySummary {
  Index samples = 0, outputs = 1, params = 0, rank = 0;
  double lambda_max = 0.0, hessian_frobenius = 0.0, hessian_trace = 0.0;
  Space space = Space::sample;
  GeometrySummary() = default;
  GeometrySummary(const Geometry& g)  // NOLINT(google-explicit-constructor): every Geometry is one
      : samples(g.samples()), outputs(g.outputs()), params(g.params()), rank(g.rank()), lambda_max(g.lambda_max()),
        hessian_frobenius(g.hessian_frobenius()), hessian_trace(g.hessian_trace()), space(g.space()) {}
};

/// samples, outputs, params (null for a Gram input), rank.
void geometry_fields(json& j, const GeometrySummary& g);
/// eta_gd, lambda_max, hessian_frobenius, hessian_trace.
void hessian_fields(json& j, const GeometrySummary& g);
/// One point of a curve: {batch, eta_star, [eta_low, eta_high,] converged, status, matvecs, method,
/// error_bound}; the bracket when `bracket` is given (momentum curves).
json curve_point(Index batch, double eta_star, const SolveReport& report,
                 const std::pair<double, double>* bracket = nullptr);
/// sampling, the geometry and Hessian fields, points [{batch, eta_star, converged, status, matvecs, method}].
json curve_json(const Geometry& g, const std::vector<ThresholdResult>& curve, double weight_decay = 0.0);
/// The first status of the curve that is not converged (converged if none).
Status curve_status(const std::vector<ThresholdResult>& curve);
/// The `sgdstab region` result: samples, outputs, rank, lambda_max, eta_gd,
/// matvecs, seconds, curves [{sampling, points [{batch, eta_star, eta_low,
/// eta_high, converged, status, method, matvecs}]}], and the solver's status.
json region_json(const StabilityRegion& region);
/// The JSON row of one bounds table entry (`sgdstab bounds`, the tables of
/// `analyze` and `cnn analyze`).
json bounds_json(const StabilityBounds& b);
/// converged, status, <iterations_key>, loss, max_residual, residual_tolerance, message.
void minimizer_fields(json& j, const MinimizeResult& res, const char* iterations_key);
/// JSON fields describing the model, the data and the minimizer's result.
void minimum_fields(json& j, const Problem& problem, const MinimizeResult& res);

/// The `sgdstab montecarlo` result: exact and simulated moments, rho_hat, verdict.
json cross_check_json(const CrossCheckOptions& o, const CrossCheckReport& rep);
/// cross_check_json of adam_l2_cross_check (options in the optimizer's lr):
/// heavy_ball_lr beside lr, momentum = beta1 (the heavy-ball beta), and the
/// note saying the quantities are |phi_t|^2 on the whole parameter space.
json adam_l2_cross_check_json(const CrossCheckOptions& o, const CrossCheckReport& rep, double beta1);

/// The machine a result was computed on (sgdstab/machine.hpp): cpu,
/// logical_cpus, library_threads, blas, blas_core, blas_threads,
/// openblas_coretype (null when unset).
json performance_json();
/// Prints j (indented) with its "performance" block added.
void print_result(const json& j, std::ostream& out);
/// Prints j with its "performance" block; a status other than converged is
/// said on err and sets the exit code.
int finish(const json& j, Status status, std::ostream& out, std::ostream& err);
/// Prints j (the minimizer's report) and says why the point is not a minimum.
int not_a_minimum(const json& j, std::ostream& out, std::ostream& err, const MinimizeResult& res);

}  // namespace sgdstab::cli
