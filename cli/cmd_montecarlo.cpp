// `sgdstab montecarlo`.
#include <ostream>

#include "commands.hpp"
#include "inputs.hpp"
#include "option_table.hpp"
#include "report.hpp"
#include "sgdstab/sgdstab.hpp"

namespace sgdstab::cli {

int cmd_montecarlo(const Args& args, std::ostream& out, std::ostream& err) {
  CrossCheckOptions o;
  o.schedule = args.choice("sampling", Schedule::without_replacement);
  o.lr = args.number("lr");
  apply_cli(args, o);  // the table's options (lib/simulation/cross_check_options.cpp): --steps, --trajectories, ...
  o.momentum = momentum_option(args).value_or(Momentum{});
  o.weight_decay = weight_decay_option(args);
  const Geometry g = load_geometry(args);
  o.batch = batch_of(args, g);
  o.progress = progress_reporter(args, err, "sgdstab montecarlo: step");
  const CrossCheckReport rep = cross_check(g, o);
  const json j = cross_check_json(o, rep);
  print_result(j, out);
  // Reshuffling has no exact answer: its verdict is inconclusive by
  // construction, and only the status of its estimate decides the exit code.
  const int code = rep.rho && rep.converged() ? exit_code(rep.verdict) : exit_code(rep.status());
  if (code == exit_code(Exit::disagree))
    err << "sgdstab: the Monte Carlo estimates disagree with the exact answer: " << rep.reason << "\n";
  else if (code != exit_code(Exit::ok))
    err << "sgdstab: " << (rep.radius.converged() ? rep.reason : rep.radius.report.message) << "\n";
  return code;
}

}  // namespace sgdstab::cli
