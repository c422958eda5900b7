#pragma once
// One function per command (cli/cmd_*.cpp): reads its parsed options, prints
// one JSON object on `out` (buffered by the caller: nothing reaches stdout
// unless the command returns), diagnostics on `err`; returns the exit code.
#include <iosfwd>
#include <vector>

#include "args.hpp"
#include "exit_codes.hpp"
#include "results.hpp"

namespace sgdstab::cli {

int cmd_threshold(const Args& args, std::ostream& out, std::ostream& err);
int cmd_radius(const Args& args, std::ostream& out, std::ostream& err);
int cmd_curve(const Args& args, std::ostream& out, std::ostream& err);
int cmd_region(const Args& args, std::ostream& out, std::ostream& err);
/// `region`'s --sampling S[,S...] (default all three) and every --mark LR,B
/// (cli/cmd_region.cpp; also sgdstab-mpi's).
std::vector<Sampling> region_schemes_option(const Args& args);
std::vector<Mark> region_marks_option(const Args& args);
int cmd_demo(const Args& args, std::ostream& out, std::ostream& err);
int cmd_bounds(const Args& args, std::ostream& out, std::ostream& err);
int cmd_band(const Args& args, std::ostream& out, std::ostream& err);
int cmd_alignment(const Args& args, std::ostream& out, std::ostream& err);
int cmd_montecarlo(const Args& args, std::ostream& out, std::ostream& err);
int cmd_covariance(const Args& args, std::ostream& out, std::ostream& err);
int cmd_minimum(const Args& args, std::ostream& out, std::ostream& err);
int cmd_analyze(const Args& args, std::ostream& out, std::ostream& err);
int cmd_escape(const Args& args, std::ostream& out, std::ostream& err);
// The LibTorch module (cli/cmd_cnn_*.cpp; only in builds with LibTorch).
int cmd_cnn_train(const Args& args, std::ostream& out, std::ostream& err);
int cmd_cnn_analyze(const Args& args, std::ostream& out, std::ostream& err);
int cmd_cnn_sweep(const Args& args, std::ostream& out, std::ostream& err);

}  // namespace sgdstab::cli
