#include "exit_codes.hpp"

#include <cstddef>

namespace sgdstab::cli {

namespace {

template <class Key>
struct Row {
  Key key;
  Exit code;
};

constexpr Row<Status> kStatusExit[] = {
    {Status::converged, Exit::ok},
    {Status::not_converged, Exit::not_trusted},
    {Status::diverged, Exit::not_trusted},
    {Status::numerical_failure, Exit::not_trusted},
};

constexpr Row<Verdict> kVerdictExit[] = {
    {Verdict::agree, Exit::ok},
    {Verdict::inconclusive, Exit::not_trusted},
    {Verdict::disagree, Exit::disagree},
};

template <class Key, std::size_t N>
int lookup(const Row<Key> (&table)[N], Key key) {
  for (const Row<Key>& row : table)
    if (row.key == key) return static_cast<int>(row.code);
  return static_cast<int>(Exit::failure);
}

}  // namespace

int exit_code(Status status) { return lookup(kStatusExit, status); }

int exit_code(Verdict verdict) { return lookup(kVerdictExit, verdict); }

std::string exit_code_help() {
  auto statuses = [](Exit code) {
    std::string out;
    for (const Row<Status>& row : kStatusExit)
      if (row.code == code) out += (out.empty() ? "" : ", ") + to_string(row.key);
    return out;
  };
  return "exit codes:\n"
         "  0  ok: the result is printed and can be trusted (status " + statuses(Exit::ok) + ")\n"
         "  1  an I/O error (a file cannot be read or written) or a problem too large for memory\n"
         "  2  bad usage or bad input (the message names it); nothing on stdout\n"
         "  3  a numerical result is not to be trusted (status " + statuses(Exit::not_trusted) +
         "; montecarlo: verdict inconclusive); the JSON is still printed when a result exists\n"
         "  4  montecarlo: the Monte Carlo estimates disagree with the exact answer\n"
         "  130, 143  interrupted by SIGINT or SIGTERM (128 + the signal): nothing on stdout, no output file\n"
         "            written or half-written; checkpoints written before the signal are kept\n";
}

}  // namespace sgdstab::cli
