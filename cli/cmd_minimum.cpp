// `sgdstab minimum`.
#include <ostream>

#include "commands.hpp"
#include "inputs.hpp"
#include "report.hpp"
#include "sgdstab/sgdstab.hpp"

namespace sgdstab::cli {

int cmd_minimum(const Args& args, std::ostream& out, std::ostream& err) {
  const auto t0 = std::chrono::steady_clock::now();
  Problem p = build_problem(args);
  if (args.has("momentum") || args.has("nesterov")) {
    const std::string trainer = trainer_name(args, p.model.spec());
    if (trainer != "gd" && trainer != "sgd")
      throw UsageError("--momentum applies to the gd and sgd trainers, not '" + trainer + "'");
  }
  const MinimizeResult res = reach_minimum(args, p);
  json j;
  minimum_fields(j, p, res);
  j["seconds"] = seconds_since(t0);
  save_requested(args, p, j);
  if (!res.converged()) return not_a_minimum(j, out, err, res);
  print_result(j, out);
  return exit_code(Exit::ok);
}

}  // namespace sgdstab::cli
