// `sgdstab cnn train`: SGD on a VGG-style CNN (theory/cnn.md, section 5).
#include "cnn_problem.hpp"
#include "report.hpp"
#include "commands.hpp"

namespace sgdstab::cli {

int cmd_cnn_train(const Args& args, std::ostream& out, std::ostream& err) {
  const auto t0 = Clock::now();
  const CnnProblem p = cnn_problem(args);
  const torch::Device device = device_option(args);
  cnn::Cnn net(p.spec, static_cast<std::uint64_t>(args.integer_or("seed", 0)), device);
  const cnn::CnnTrainOptions o = train_options(args, args.number("lr"), args.integer("batch"));
  json j = problem_fields(p, net, device);
  j["lr"] = o.lr;
  j["batch"] = o.batch;
  j["sampling"] = to_string(o.schedule);
  j["momentum"] = o.momentum.beta;
  j["nesterov"] = o.momentum.nesterov;
  json files = json::object();
  const MinimizeResult res = train(args, p, net, o, files, err);
  result_fields(j, res);
  save_outputs(args, net, p.data, nullptr, files);
  j["files"] = files;
  j["seconds"] = since(t0);
  print_result(j, out);
  return exit_code(res.status());
}

}  // namespace sgdstab::cli
