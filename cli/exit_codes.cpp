#include "exit_codes.hpp"

namespace sgdstab::cli {

namespace {

struct StatusRow {
  Status status;
  Exit code;
};
constexpr StatusRow kStatusExit[] = {
    {Status::converged, Exit::ok},
    {Status::not_converged, Exit::not_trusted},
    {Status::diverged, Exit::not_trusted},
    {Status::numerical_failure, Exit::not_trusted},
};

struct VerdictRow {
  Verdict verdict;
  Exit code;
};
constexpr VerdictRow kVerdictExit[] = {
    {Verdict::agree, Exit::ok},
    {Verdict::inconclusive, Exit::not_trusted},
    {Verdict::disagree, Exit::disagree},
};

}  // namespace

int exit_code(Status status) {
  for (const StatusRow& row : kStatusExit)
    if (row.status == status) return static_cast<int>(row.code);
  return static_cast<int>(Exit::failure);
}

int exit_code(Verdict verdict) {
  for (const VerdictRow& row : kVerdictExit)
    if (row.verdict == verdict) return static_cast<int>(row.code);
  return static_cast<int>(Exit::failure);
}

std::string exit_code_help() {
  auto statuses = [](Exit code) {
    std::string out;
    for (const StatusRow& row : kStatusExit)
      if (row.code == code) out += (out.empty() ? "" : ", ") + to_string(row.status);
    return out;
  };
  return "exit codes:\n"
         "  0  ok: the result is printed and can be trusted (status " + statuses(Exit::ok) + ")\n"
         "  1  an I/O error (a file cannot be read or written) or a problem too large for memory\n"
         "  2  bad usage or bad input (the message names it); nothing on stdout\n"
         "  3  a numerical result is not to be trusted (status " + statuses(Exit::not_trusted) +
         "; montecarlo: verdict inconclusive); the JSON is still printed when a result exists\n"
         "  4  montecarlo: the Monte Carlo estimates disagree with the exact answer\n";
}

}  // namespace sgdstab::cli
