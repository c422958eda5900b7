// The shared vocabulary (types.hpp): every enumerator's spelling, parse as
// its inverse, the errors of parse, Status::combine; the CLI's exit-code
// table (cli/exit_codes.hpp) against the README's documented table.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "exit_codes.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/types.hpp"

namespace {

// Every spelling the command line and JSON use, written out here (the
// reference: README and the command-line contract), enumerator by enumerator.
template <class E>
void expect_spellings(const std::vector<std::pair<E, std::string>>& expected, const std::string& joined) {
  for (const auto& [value, text] : expected) {
    EXPECT_EQ(sgdstab::to_string(value), text);
    EXPECT_EQ(sgdstab::parse<E>(text), value) << text;
  }
  EXPECT_EQ(sgdstab::choices<E>(), joined);
}

TEST(Types, EverySpellingRoundTrips) {
  using namespace sgdstab;
  expect_spellings<Status>({{Status::converged, "converged"}, {Status::not_converged, "not_converged"},
                            {Status::diverged, "diverged"}, {Status::numerical_failure, "numerical_failure"}},
                           "converged|not_converged|diverged|numerical_failure");
  expect_spellings<Verdict>({{Verdict::agree, "agree"}, {Verdict::disagree, "disagree"},
                             {Verdict::inconclusive, "inconclusive"}},
                            "agree|disagree|inconclusive");
  expect_spellings<Method>({{Method::automatic, "automatic"}, {Method::dense, "dense"}, {Method::lanczos, "lanczos"}},
                           "automatic|dense|lanczos");
  expect_spellings<Space>({{Space::automatic, "automatic"}, {Space::parameter, "parameter"}, {Space::sample, "sample"}},
                          "automatic|parameter|sample");
  expect_spellings<Sampling>({{Sampling::without_replacement, "without"}, {Sampling::with_replacement, "with"},
                              {Sampling::bernoulli, "bernoulli"}},
                             "without|with|bernoulli");
  expect_spellings<Schedule>({{Schedule::without_replacement, "without"}, {Schedule::with_replacement, "with"},
                              {Schedule::bernoulli, "bernoulli"}, {Schedule::reshuffle, "reshuffle"}},
                             "without|with|bernoulli|reshuffle");
  expect_spellings<Device>({{Device::cpu, "cpu"}, {Device::cuda, "cuda"}, {Device::automatic, "auto"}},
                           "cpu|cuda|auto");
  expect_spellings<Activation>({{Activation::identity, "identity"}, {Activation::relu, "relu"},
                                {Activation::tanh, "tanh"}, {Activation::erf, "erf"},
                                {Activation::softplus, "softplus"}},
                               "identity|relu|tanh|erf|softplus");
  expect_spellings<Parametrization>({{Parametrization::standard, "standard"}, {Parametrization::ntk, "ntk"},
                                     {Parametrization::mean_field, "mean-field"}},
                                    "standard|ntk|mean-field");
  expect_spellings<Init>({{Init::he, "he"}, {Init::lecun, "lecun"}}, "he|lecun");
  expect_spellings<PixelScaling>({{PixelScaling::none, "none"}, {PixelScaling::unit, "unit"},
                                  {PixelScaling::standardize, "standardize"}, {PixelScaling::center, "center"}},
                                 "none|unit|standardize|center");
}

TEST(Types, AliasesParseButAreNeverPrinted) {
  EXPECT_EQ(sgdstab::parse<sgdstab::Activation>("linear"), sgdstab::Activation::identity);
  EXPECT_EQ(sgdstab::to_string(sgdstab::Activation::identity), "identity");
  EXPECT_EQ(sgdstab::parse<sgdstab::Parametrization>("mean_field"), sgdstab::Parametrization::mean_field);
  EXPECT_EQ(sgdstab::to_string(sgdstab::Parametrization::mean_field), "mean-field");
}

TEST(Types, ParseErrorsNameTheKindAndTheChoices) {
  try {
    sgdstab::parse<sgdstab::Sampling>("reshuffle");  // a Schedule, not a closed-form Sampling
    FAIL() << "no exception";
  } catch (const sgdstab::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()), "sampling: expected one of without|with|bernoulli, got 'reshuffle'");
  }
  EXPECT_THROW(sgdstab::parse<sgdstab::Method>(""), sgdstab::invalid_argument);
  EXPECT_THROW(sgdstab::parse<sgdstab::Device>("Auto"), sgdstab::invalid_argument);  // case matters
  EXPECT_THROW(sgdstab::parse<sgdstab::Status>("ok"), sgdstab::invalid_argument);
}

TEST(Types, CombineKeepsTheFirstFailure) {
  using sgdstab::Status;
  EXPECT_EQ(sgdstab::combine(Status::converged, Status::converged), Status::converged);
  EXPECT_EQ(sgdstab::combine(Status::converged, Status::diverged), Status::diverged);
  EXPECT_EQ(sgdstab::combine(Status::numerical_failure, Status::not_converged), Status::numerical_failure);
  EXPECT_EQ(sgdstab::combine(Status::not_converged, Status::converged), Status::not_converged);
}

TEST(Types, NumericalErrorCarriesItsStatus) {
  const sgdstab::numerical_error e("x");
  EXPECT_EQ(e.status(), sgdstab::Status::numerical_failure);
}

#ifdef SGDSTAB_SOURCE_DIR
// The README documents the exit codes as a table "| code | status ... |";
// the program's table must say the same for every Status and Verdict.
std::map<std::string, int> documented_exit_codes() {
  std::ifstream in(std::string(SGDSTAB_SOURCE_DIR) + "/README.md");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  const std::size_t at = text.find("## Exit codes");
  EXPECT_NE(at, std::string::npos) << "README.md has no '## Exit codes' section";
  std::map<std::string, int> out;
  if (at == std::string::npos) return out;
  // Rows: | N | `status` or `verdict: v` names, comma-separated, in backquotes | ...
  const std::regex row(R"(\n\| (\d) \| ([^|]*)\|)");
  const std::string section = text.substr(at, text.find("\n## ", at + 3) - at);
  for (std::sregex_iterator it(section.begin(), section.end(), row), end; it != end; ++it) {
    const int code = std::stoi((*it)[1]);
    const std::string names = (*it)[2];
    const std::regex tick("`([a-z_: ]+)`");
    for (std::sregex_iterator t(names.begin(), names.end(), tick); t != end; ++t) out[(*t)[1]] = code;
  }
  return out;
}

TEST(ExitCodes, TableMatchesTheReadme) {
  using sgdstab::cli::exit_code;
  const auto doc = documented_exit_codes();
  for (auto s : {sgdstab::Status::converged, sgdstab::Status::not_converged, sgdstab::Status::diverged,
                 sgdstab::Status::numerical_failure}) {
    const std::string key = sgdstab::to_string(s);
    ASSERT_TRUE(doc.count(key)) << "README does not list status " << key;
    EXPECT_EQ(exit_code(s), doc.at(key)) << key;
  }
  for (auto v : {sgdstab::Verdict::agree, sgdstab::Verdict::disagree, sgdstab::Verdict::inconclusive}) {
    const std::string key = "verdict: " + sgdstab::to_string(v);
    ASSERT_TRUE(doc.count(key)) << "README does not list " << key;
    EXPECT_EQ(exit_code(v), doc.at(key)) << key;
  }
  // The codes themselves, as documented since the first release.
  EXPECT_EQ(exit_code(sgdstab::Status::converged), 0);
  EXPECT_EQ(exit_code(sgdstab::Status::not_converged), 3);
  EXPECT_EQ(exit_code(sgdstab::Status::diverged), 3);
  EXPECT_EQ(exit_code(sgdstab::Status::numerical_failure), 3);
  EXPECT_EQ(exit_code(sgdstab::Verdict::disagree), 4);
  EXPECT_EQ(exit_code(sgdstab::cli::Exit::usage), 2);
  EXPECT_EQ(exit_code(sgdstab::cli::Exit::failure), 1);
  // The help text lists every status under its code.
  const std::string help = sgdstab::cli::exit_code_help();
  for (const char* s : {"converged", "not_converged", "diverged", "numerical_failure"})
    EXPECT_NE(help.find(s), std::string::npos) << s;
}
#endif

}  // namespace
