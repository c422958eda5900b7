// Options as data (include/sgdstab/options.hpp): SolverOptions' table against
// the struct itself (every member there, read and written through the table
// as directly), each rule against hand-written bad and edge values, and the
// text of values. The command line's help and parsing of the same table are
// tested in test_cli.cpp (Cli.SolverOptionsComeFromTheTable), the Python
// keywords in tests/python/test_errors.py.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "sgdstab/cnn_options.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/escape.hpp"
#include "sgdstab/geometry.hpp"
#include "sgdstab/minimize.hpp"
#include "sgdstab/montecarlo.hpp"
#include "sgdstab/options.hpp"

namespace {

using sgdstab::OptionKind;
using sgdstab::OptionValue;
using sgdstab::SolverOptions;

namespace {

// S's table, field by field: (key, command-line name, default value).
using Expected = std::vector<std::tuple<std::string, std::string, OptionValue>>;
template <class S>
void expect_table(const Expected& expected) {
  const auto& t = sgdstab::option_table<S>();
  ASSERT_EQ(t.size(), expected.size());
  for (std::size_t i = 0; i < t.size(); ++i) {
    EXPECT_EQ(t[i].key, std::get<0>(expected[i]));
    EXPECT_EQ(t[i].cli, std::get<1>(expected[i])) << t[i].key;
    EXPECT_EQ(t[i].get(S{}), std::get<2>(expected[i])) << t[i].key;
  }
}

// What f throws as sgdstab::invalid_argument; empty when it returns.
template <class F>
std::string thrown_by(const F& f) {
  try {
    f();
  } catch (const sgdstab::invalid_argument& e) {
    return e.what();
  }
  return "";
}

}  // namespace

const sgdstab::OptionField<SolverOptions>& field(const std::string& key) {
  return sgdstab::option_field<SolverOptions>(key);
}

std::string invalid_argument_of(const SolverOptions& so) {
  try {
    so.validate();
  } catch (const sgdstab::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(Options, SolverTableListsEveryMemberWithItsKindAndDefault) {
  // The members of SolverOptions, written out from solver.hpp, in order.
  const std::vector<std::pair<std::string, OptionKind>> members = {
      {"method", OptionKind::choice},
      {"tolerance", OptionKind::real},
      {"subspace_dimension", OptionKind::integer},
      {"max_iterations", OptionKind::integer},
      {"dense_max_dimension", OptionKind::integer},
      {"dense_fallback_max_dimension", OptionKind::integer},
      {"want_direction", OptionKind::flag},
      {"memory_limit_bytes", OptionKind::real},
      {"device", OptionKind::choice},
      {"mixed_precision", OptionKind::flag},
      {"mixed_precision_min_rank", OptionKind::integer}};
  const auto& table = sgdstab::option_table<SolverOptions>();
  ASSERT_EQ(table.size(), members.size());
  for (std::size_t i = 0; i < members.size(); ++i) {
    EXPECT_EQ(table[i].key, members[i].first);
    EXPECT_EQ(table[i].kind, members[i].second) << members[i].first;
    EXPECT_FALSE(table[i].help.empty()) << members[i].first;
  }
  // The defaults read through the table are the struct's own.
  const SolverOptions d;
  EXPECT_EQ(field("method").get(d), OptionValue(std::string("automatic")));
  EXPECT_EQ(field("tolerance").get(d), OptionValue(d.tolerance));
  EXPECT_EQ(field("subspace_dimension").get(d), OptionValue(static_cast<long long>(d.subspace_dimension)));
  EXPECT_EQ(field("max_iterations").get(d), OptionValue(static_cast<long long>(d.max_iterations)));
  EXPECT_EQ(field("dense_max_dimension").get(d), OptionValue(static_cast<long long>(d.dense_max_dimension)));
  EXPECT_EQ(field("dense_fallback_max_dimension").get(d),
            OptionValue(static_cast<long long>(d.dense_fallback_max_dimension)));
  EXPECT_EQ(field("want_direction").get(d), OptionValue(d.want_direction));
  EXPECT_EQ(field("memory_limit_bytes").get(d), OptionValue(d.memory_limit_bytes));
  EXPECT_EQ(field("device").get(d), OptionValue(std::string("auto")));
  EXPECT_EQ(field("mixed_precision").get(d), OptionValue(d.mixed_precision));
  EXPECT_EQ(field("mixed_precision_min_rank").get(d), OptionValue(static_cast<long long>(d.mixed_precision_min_rank)));
  // The defaults as the help shows them.
  EXPECT_EQ(sgdstab::default_text(field("tolerance")), "1e-10");
  EXPECT_EQ(sgdstab::default_text(field("max_iterations")), "1000");
  EXPECT_EQ(sgdstab::default_text(field("method")), "automatic");
  EXPECT_EQ(sgdstab::default_text(field("mixed_precision")), "true");
  EXPECT_EQ(sgdstab::default_text(field("mixed_precision"), true), "mixed");  // the command line's word
  EXPECT_EQ(sgdstab::default_text(field("memory_limit_bytes")), "0: what the system has");
}

TEST(Options, SettingThroughTheTableSetsTheMember) {
  SolverOptions so;
  field("method").set(so, std::string("lanczos"));
  field("tolerance").set(so, 1e-7);
  field("subspace_dimension").set(so, 24LL);
  field("max_iterations").set(so, 5LL);
  field("dense_max_dimension").set(so, 10LL);
  field("dense_fallback_max_dimension").set(so, 20LL);
  field("want_direction").set(so, true);
  field("memory_limit_bytes").set(so, 1048576LL);  // an integer is a number too
  field("device").set(so, std::string("cpu"));
  field("mixed_precision").set(so, false);
  field("mixed_precision_min_rank").set(so, 7LL);
  EXPECT_EQ(so.method, sgdstab::Method::lanczos);
  EXPECT_EQ(so.tolerance, 1e-7);
  EXPECT_EQ(so.subspace_dimension, 24);
  EXPECT_EQ(so.max_iterations, 5);
  EXPECT_EQ(so.dense_max_dimension, 10);
  EXPECT_EQ(so.dense_fallback_max_dimension, 20);
  EXPECT_TRUE(so.want_direction);
  EXPECT_EQ(so.memory_limit_bytes, 1048576.0);
  EXPECT_EQ(so.device, sgdstab::Device::cpu);
  EXPECT_FALSE(so.mixed_precision);
  EXPECT_EQ(so.mixed_precision_min_rank, 7);
  EXPECT_NO_THROW(so.validate());
  // A value of the wrong kind, a spelling that is not a choice, a key that is not there.
  EXPECT_THROW(field("max_iterations").set(so, 2.5), sgdstab::invalid_argument);
  EXPECT_THROW(field("want_direction").set(so, 1LL), sgdstab::invalid_argument);
  try {
    field("method").set(so, std::string("magic"));
    ADD_FAILURE() << "no error for method 'magic'";
  } catch (const sgdstab::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("automatic|dense|lanczos"), std::string::npos) << e.what();
  }
  try {
    field("tol");
    ADD_FAILURE() << "no error for the key 'tol'";
  } catch (const sgdstab::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("tolerance"), std::string::npos) << e.what();
  }
}

TEST(Options, ValidateChecksEveryRule) {
  struct Bad {
    void (*change)(SolverOptions&);
    std::string message;
  };
  const std::vector<Bad> bad = {
      {[](SolverOptions& s) { s.tolerance = 0.0; }, "SolverOptions: tolerance must satisfy 0 < tolerance < 0.1, got 0"},
      {[](SolverOptions& s) { s.tolerance = 0.1; }, "tolerance must satisfy 0 < tolerance < 0.1, got 0.1"},
      {[](SolverOptions& s) { s.tolerance = std::numeric_limits<double>::quiet_NaN(); }, "got nan"},
      {[](SolverOptions& s) { s.max_iterations = 0; }, "SolverOptions: max_iterations must be >= 1, got 0"},
      {[](SolverOptions& s) { s.subspace_dimension = 2; },
       "SolverOptions: subspace_dimension must be 0 (automatic) or >= 3, got 2"},
      {[](SolverOptions& s) { s.subspace_dimension = -1; }, "subspace_dimension must be 0 (automatic) or >= 3"},
      {[](SolverOptions& s) { s.dense_max_dimension = -1; }, "dense_max_dimension must be >= 0, got -1"},
      {[](SolverOptions& s) { s.dense_fallback_max_dimension = -1; }, "dense_fallback_max_dimension must be >= 0"},
      {[](SolverOptions& s) { s.memory_limit_bytes = -1.0; }, "memory_limit_bytes must be finite and >= 0"},
      {[](SolverOptions& s) { s.memory_limit_bytes = HUGE_VAL; }, "memory_limit_bytes must be finite and >= 0"},
      {[](SolverOptions& s) { s.mixed_precision_min_rank = -3; }, "mixed_precision_min_rank must be >= 0, got -3"}};
  for (const Bad& b : bad) {
    SolverOptions so;
    b.change(so);
    const std::string what = invalid_argument_of(so);
    EXPECT_NE(what.find(b.message), std::string::npos) << "expected '" << b.message << "', got '" << what << "'";
  }
  // The edges that are valid.
  SolverOptions edge;
  edge.tolerance = 0.099;
  edge.max_iterations = 1;
  edge.subspace_dimension = 3;
  edge.dense_max_dimension = 0;
  edge.memory_limit_bytes = 0.0;
  edge.mixed_precision_min_rank = 0;
  EXPECT_EQ(invalid_argument_of(edge), "");
  edge.subspace_dimension = 0;
  EXPECT_EQ(invalid_argument_of(edge), "");
}

TEST(Options, ValueTextIsTheShortestThatReadsBack) {
  EXPECT_EQ(sgdstab::option_value_text(1e-10), "1e-10");
  EXPECT_EQ(sgdstab::option_value_text(0.1), "0.1");
  EXPECT_EQ(sgdstab::option_value_text(1048576.0), "1048576");
  const double third = 1.0 / 3.0;
  EXPECT_EQ(std::stod(sgdstab::option_value_text(third)), third);
  EXPECT_EQ(sgdstab::option_value_text(OptionValue(true)), "true");
  EXPECT_EQ(sgdstab::option_value_text(OptionValue(-4LL)), "-4");
  EXPECT_EQ(sgdstab::option_value_text(OptionValue(std::string("lanczos"))), "lanczos");
}

}  // namespace

// ReductionOptions' and Momentum's tables (lib/geometry/reduction_options.cpp,
// lib/foundations/options.cpp): every member, written out from geometry.hpp
// and solver.hpp, with its kind, its default read through the table, its
// command-line name, and validate() checking each rule.
TEST(Options, ReductionAndMomentumTablesListEveryMemberAndCheckEachRule) {
  using sgdstab::Momentum;
  using sgdstab::ReductionOptions;
  const auto& rt = sgdstab::option_table<ReductionOptions>();
  const std::vector<std::tuple<std::string, OptionKind, std::string>> reduction = {
      {"rank_tolerance", OptionKind::real, "rank-tol"},
      {"gram_tolerance", OptionKind::real, ""},
      {"space", OptionKind::choice, "space"},
      {"memory_limit_bytes", OptionKind::real, ""}};
  ASSERT_EQ(rt.size(), reduction.size());
  for (std::size_t i = 0; i < reduction.size(); ++i) {
    EXPECT_EQ(rt[i].key, std::get<0>(reduction[i]));
    EXPECT_EQ(rt[i].kind, std::get<1>(reduction[i])) << rt[i].key;
    EXPECT_EQ(rt[i].cli, std::get<2>(reduction[i])) << rt[i].key;
    EXPECT_FALSE(rt[i].help.empty()) << rt[i].key;
  }
  const ReductionOptions rd;
  EXPECT_EQ(rt[0].get(rd), OptionValue(0.0));
  EXPECT_EQ(rt[1].get(rd), OptionValue(1e-6));
  EXPECT_EQ(rt[2].get(rd), OptionValue(std::string("automatic")));
  EXPECT_EQ(sgdstab::default_text(rt[0]), "0: 10 max(nC, p) eps");
  EXPECT_EQ(sgdstab::default_text(rt[1]), "1e-06");
  ReductionOptions ro;
  sgdstab::option_field<ReductionOptions>("space").set(ro, std::string("sample"));
  EXPECT_EQ(ro.space, sgdstab::Space::sample);
  EXPECT_THROW(sgdstab::option_field<ReductionOptions>("space").set(ro, std::string("diagonal")),
               sgdstab::invalid_argument);
  const auto message = [](ReductionOptions o) -> std::string {
    try {
      o.validate();
    } catch (const sgdstab::invalid_argument& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_EQ(message(rd), "");
  ro = rd;
  ro.rank_tolerance = -1.0;  // <= 0: the default cut-off
  EXPECT_EQ(message(ro), "");
  ro.rank_tolerance = 1.0;
  EXPECT_EQ(message(ro), "ReductionOptions: rank_tolerance must be finite and < 1, got 1");
  ro = rd;
  ro.gram_tolerance = -1e-3;
  EXPECT_EQ(message(ro), "ReductionOptions: gram_tolerance must be finite and >= 0, got -0.001");
  ro = rd;
  ro.memory_limit_bytes = std::numeric_limits<double>::infinity();
  EXPECT_NE(message(ro).find("memory_limit_bytes must be finite and >= 0"), std::string::npos) << message(ro);

  const auto& mt = sgdstab::option_table<Momentum>();
  ASSERT_EQ(mt.size(), 2u);
  EXPECT_EQ(mt[0].key, "beta");
  EXPECT_EQ(mt[0].kind, OptionKind::real);
  EXPECT_EQ(mt[0].cli, "momentum");
  EXPECT_EQ(mt[1].key, "nesterov");
  EXPECT_EQ(mt[1].kind, OptionKind::flag);
  EXPECT_EQ(mt[1].cli, "nesterov");
  EXPECT_EQ(mt[0].get(Momentum{}), OptionValue(0.0));
  EXPECT_EQ(mt[1].get(Momentum{}), OptionValue(false));
  Momentum mo;
  mt[0].set(mo, 0.9);
  mt[1].set(mo, true);
  EXPECT_EQ(mo.beta, 0.9);
  EXPECT_TRUE(mo.nesterov);
  EXPECT_NO_THROW(mo.validate());
  for (double beta : {0.0, 0.999}) EXPECT_NO_THROW((Momentum{beta, false}.validate())) << beta;
  for (double beta : {-0.1, 1.0, std::numeric_limits<double>::quiet_NaN()}) {
    try {
      Momentum{beta, false}.validate();
      ADD_FAILURE() << "beta = " << beta << " accepted";
    } catch (const sgdstab::invalid_argument& e) {
      EXPECT_EQ(std::string(e.what()).rfind("Momentum: beta must satisfy 0 <= beta < 1, got ", 0), 0u) << e.what();
    }
  }
}

// CrossCheckOptions' table (lib/simulation/cross_check_options.cpp): the
// run's sizes, seed and levels, written out from montecarlo.hpp, with the
// struct's defaults; cross_check checks its rules.
TEST(Options, CrossCheckTableListsItsFieldsAndCrossCheckChecksThem) {
  using sgdstab::CrossCheckOptions;
  const auto& t = sgdstab::option_table<CrossCheckOptions>();
  const CrossCheckOptions d;
  const std::vector<std::tuple<std::string, std::string, OptionValue>> expected = {
      {"steps", "steps", OptionValue(50LL)},
      {"trajectories", "trajectories", OptionValue(2000LL)},
      {"blocks", "blocks", OptionValue(2000LL)},
      {"seed", "seed", OptionValue(0LL)},
      {"confidence", "", OptionValue(0.95)},
      {"significance", "", OptionValue(0.01)}};
  ASSERT_EQ(t.size(), expected.size());
  for (std::size_t i = 0; i < t.size(); ++i) {
    EXPECT_EQ(t[i].key, std::get<0>(expected[i]));
    EXPECT_EQ(t[i].cli, std::get<1>(expected[i])) << t[i].key;
    EXPECT_EQ(t[i].get(d), std::get<2>(expected[i])) << t[i].key;
  }
  CrossCheckOptions o;
  sgdstab::option_field<CrossCheckOptions>("blocks").set(o, 7LL);
  sgdstab::option_field<CrossCheckOptions>("confidence").set(o, 0.9);
  EXPECT_EQ(o.blocks, 7);
  EXPECT_EQ(o.confidence, 0.9);  // a member of the base MonteCarloRun, set through the table
  const auto g = sgdstab::Geometry::from_jacobian(Eigen::MatrixXd::Identity(4, 3), 1);
  o = CrossCheckOptions{};
  o.lr = 0.1;
  o.batch = 2;
  o.significance = 1.5;
  try {
    sgdstab::cross_check(g, o);
    ADD_FAILURE() << "significance 1.5 accepted";
  } catch (const sgdstab::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()), "CrossCheckOptions: significance must lie in (0, 1), got 1.5");
  }
  o.significance = 0.01;
  o.trajectories = 1;
  EXPECT_THROW(sgdstab::cross_check(g, o), sgdstab::invalid_argument);
}

// EscapeOptions' table (lib/models/escape_options.cpp), written out from
// escape.hpp, and validate() checking its rules beside the run's own checks.
TEST(Options, EscapeTableListsItsFieldsAndValidateChecksThem) {
  using sgdstab::EscapeOptions;
  const auto& t = sgdstab::option_table<EscapeOptions>();
  const EscapeOptions d;
  const std::vector<std::tuple<std::string, std::string, OptionValue>> expected = {
      {"epsilon", "epsilon", OptionValue(1e-3)},
      {"runs", "runs", OptionValue(100LL)},
      {"max_steps", "escape-steps", OptionValue(20000LL)},
      {"escape_factor", "", OptionValue(1e4)},
      {"converge_factor", "", OptionValue(1e-8)},
      {"seed", "", OptionValue(0LL)},
      {"confidence", "", OptionValue(0.95)}};
  ASSERT_EQ(t.size(), expected.size());
  for (std::size_t i = 0; i < t.size(); ++i) {
    EXPECT_EQ(t[i].key, std::get<0>(expected[i]));
    EXPECT_EQ(t[i].cli, std::get<1>(expected[i])) << t[i].key;
    EXPECT_EQ(t[i].get(d), std::get<2>(expected[i])) << t[i].key;
  }
  const auto message = [](const EscapeOptions& o) -> std::string {
    try {
      o.validate(10);
    } catch (const sgdstab::invalid_argument& e) {
      return e.what();
    }
    return "";
  };
  EscapeOptions o;
  o.lr = 0.1;
  o.batch = 2;
  EXPECT_EQ(message(o), "");
  o.runs = 0;
  EXPECT_EQ(message(o), "EscapeOptions: runs must be >= 1, got 0");
  o.runs = 1;
  o.escape_factor = 1.0;
  EXPECT_EQ(message(o), "EscapeOptions: escape_factor must be finite and > 1, got 1");
  o.escape_factor = 1e4;
  o.converge_factor = 0.0;
  EXPECT_EQ(message(o), "EscapeOptions: converge_factor must lie in (0, 1), got 0");
  o.converge_factor = 1e-8;
  o.epsilon = -1e-3;
  EXPECT_EQ(message(o), "EscapeOptions: epsilon must be finite and > 0, got -0.001");
  o.epsilon = 1e-3;
  o.batch = 11;  // the run's own check, beside the table's
  EXPECT_NE(message(o).find("batch"), std::string::npos) << message(o);
}

// MinimizeOptions' and TrainOptions' tables (lib/models/trainer_options.cpp),
// written out from minimize.hpp, and validate() checking their rules.
TEST(Options, TrainerTablesListTheirFieldsAndValidateChecksThem) {
  using sgdstab::MinimizeOptions;
  using sgdstab::TrainOptions;
  expect_table<MinimizeOptions>({{"residual_tolerance", "residual-tol", OptionValue(1e-10)},
                                 {"max_iterations", "max-iter", OptionValue(100LL)},
                                 {"memory_limit_bytes", "", OptionValue(0.0)}});
  expect_table<TrainOptions>({{"lr", "lr", OptionValue(0.0)},
                              {"batch", "batch", OptionValue(0LL)},
                              {"sampling", "train-sampling", OptionValue(std::string("without"))},
                              {"max_steps", "max-steps", OptionValue(100000LL)},
                              {"residual_tolerance", "residual-tol", OptionValue(1e-10)},
                              {"check_every", "log-every", OptionValue(0LL)},
                              {"seed", "", OptionValue(0LL)},
                              {"divergence_factor", "", OptionValue(1e8)}});
  MinimizeOptions m;
  const auto check_m = [&] { m.validate(); };
  EXPECT_EQ(thrown_by(check_m), "");
  m.residual_tolerance = 0.0;
  EXPECT_EQ(thrown_by(check_m), "MinimizeOptions: residual_tolerance must be finite and > 0, got 0");
  m.residual_tolerance = 1e-10;
  m.max_iterations = -1;
  EXPECT_EQ(thrown_by(check_m), "MinimizeOptions: max_iterations must be >= 0, got -1");
  m.max_iterations = 0;
  m.memory_limit_bytes = NAN;
  EXPECT_EQ(thrown_by(check_m), "MinimizeOptions: memory_limit_bytes must be finite and >= 0, got nan");
  TrainOptions o;
  const auto check_o = [&] { o.validate(10); };
  EXPECT_EQ(thrown_by(check_o), "TrainOptions: lr must be finite and > 0, got 0");
  o.lr = 0.1;
  EXPECT_EQ(thrown_by(check_o), "TrainOptions: batch must be >= 1, got 0");
  o.batch = 11;  // the samples' check, beside the table's
  EXPECT_NE(thrown_by(check_o).find("batch"), std::string::npos);
  o.batch = 10;
  EXPECT_EQ(thrown_by(check_o), "");
  o.divergence_factor = 1.0;
  EXPECT_EQ(thrown_by(check_o), "TrainOptions: divergence_factor must be finite and > 1, got 1");
  o.divergence_factor = 1e8;
  o.check_every = -2;
  EXPECT_EQ(thrown_by(check_o), "TrainOptions: check_every must be >= 0, got -2");
  o.check_every = 0;
  o.momentum.beta = 1.0;  // Momentum's own table
  EXPECT_NE(thrown_by(check_o).find("beta"), std::string::npos);
}

// The cnn module's tables (lib/cnn/cnn_options.cpp, built without LibTorch),
// written out from cnn_options.hpp, and validate() checking their rules.
TEST(Options, CnnTablesListTheirFieldsAndValidateChecksThem) {
  using sgdstab::cnn::CnnTrainOptions;
  using sgdstab::cnn::GramOptions;
  expect_table<GramOptions>({{"chunk", "gram-chunk", OptionValue(0LL)},
                             {"memory_limit_bytes", "gram-memory", OptionValue(0.0)}});
  EXPECT_EQ(sgdstab::option_table<GramOptions>()[1].cli_unit, 1048576.0);  // MiB on the command line
  expect_table<CnnTrainOptions>({{"lr", "lr", OptionValue(0.0)},
                                 {"batch", "batch", OptionValue(0LL)},
                                 {"schedule", "sampling", OptionValue(std::string("without"))},
                                 {"max_steps", "max-steps", OptionValue(100000LL)},
                                 {"residual_tolerance", "residual-tol", OptionValue(1e-6)},
                                 {"check_every", "", OptionValue(0LL)},
                                 {"seed", "", OptionValue(0LL)},
                                 {"observe_every", "", OptionValue(0LL)},
                                 {"divergence_factor", "", OptionValue(1e8)}});
  GramOptions g;
  const auto check_g = [&] { g.validate(); };
  EXPECT_EQ(thrown_by(check_g), "");
  g.chunk = -1;
  EXPECT_EQ(thrown_by(check_g), "GramOptions: chunk must be >= 0, got -1");
  g.chunk = 0;
  g.memory_limit_bytes = INFINITY;
  EXPECT_EQ(thrown_by(check_g), "GramOptions: memory_limit_bytes must be finite and >= 0, got inf");
  CnnTrainOptions o;
  o.batch = 2;
  const auto check_o = [&] { o.validate(4); };
  EXPECT_EQ(thrown_by(check_o), "CnnTrainOptions: lr must be finite and > 0, got 0");
  o.lr = 0.1;
  EXPECT_EQ(thrown_by(check_o), "");
  o.observe_every = -1;
  EXPECT_EQ(thrown_by(check_o), "CnnTrainOptions: observe_every must be >= 0, got -1");
  o.observe_every = 0;
  o.batch = 5;  // the samples' check, beside the table's
  EXPECT_NE(thrown_by(check_o).find("batch"), std::string::npos);
}
