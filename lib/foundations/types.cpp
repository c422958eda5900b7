// The one table of enumerator spellings (include/sgdstab/types.hpp).
#include "sgdstab/types.hpp"

#include <utility>

#include "sgdstab/errors.hpp"

namespace sgdstab {

namespace {

template <class E>
struct Spelling {
  E value;
  const char* text;
  bool alias;  // accepted by parse, never printed
};

template <class E>
struct Names;  // static constexpr kind and table[] per enumeration; first row of a value is its name

#define SGDSTAB_NAMES(E, KIND, ...)                           \
  template <>                                                 \
  struct Names<E> {                                           \
    static constexpr const char* kind = KIND;                 \
    static constexpr Spelling<E> table[] = {__VA_ARGS__};     \
  };

SGDSTAB_NAMES(Status, "status", {Status::converged, "converged", false},
              {Status::not_converged, "not_converged", false}, {Status::diverged, "diverged", false},
              {Status::numerical_failure, "numerical_failure", false})
SGDSTAB_NAMES(Verdict, "verdict", {Verdict::agree, "agree", false}, {Verdict::disagree, "disagree", false},
              {Verdict::inconclusive, "inconclusive", false})
SGDSTAB_NAMES(Method, "method", {Method::automatic, "automatic", false}, {Method::dense, "dense", false},
              {Method::lanczos, "lanczos", false})
SGDSTAB_NAMES(Space, "space", {Space::automatic, "automatic", false}, {Space::parameter, "parameter", false},
              {Space::sample, "sample", false})
SGDSTAB_NAMES(Sampling, "sampling", {Sampling::without_replacement, "without", false},
              {Sampling::with_replacement, "with", false}, {Sampling::bernoulli, "bernoulli", false})
SGDSTAB_NAMES(Schedule, "sampling", {Schedule::without_replacement, "without", false},
              {Schedule::with_replacement, "with", false}, {Schedule::bernoulli, "bernoulli", false},
              {Schedule::reshuffle, "reshuffle", false})
SGDSTAB_NAMES(Device, "device", {Device::cpu, "cpu", false}, {Device::cuda, "cuda", false},
              {Device::automatic, "auto", false})
SGDSTAB_NAMES(Activation, "activation", {Activation::identity, "identity", false},
              {Activation::identity, "linear", true}, {Activation::relu, "relu", false},
              {Activation::tanh, "tanh", false}, {Activation::erf, "erf", false},
              {Activation::softplus, "softplus", false})
SGDSTAB_NAMES(Parametrization, "parametrization", {Parametrization::standard, "standard", false},
              {Parametrization::ntk, "ntk", false}, {Parametrization::mean_field, "mean-field", false},
              {Parametrization::mean_field, "mean_field", true})
SGDSTAB_NAMES(Init, "init", {Init::he, "he", false}, {Init::lecun, "lecun", false})
SGDSTAB_NAMES(PixelScaling, "pixel scaling", {PixelScaling::none, "none", false},
              {PixelScaling::unit, "unit", false}, {PixelScaling::standardize, "standardize", false},
              {PixelScaling::center, "center", false})

#undef SGDSTAB_NAMES

template <class E>
std::string name_of(E value) {
  for (const auto& row : Names<E>::table)
    if (row.value == value && !row.alias) return row.text;
  return "unknown";  // only for a value cast from an out-of-range integer
}

}  // namespace

template <class E>
std::string choices() {
  std::string out;
  for (const auto& row : Names<E>::table) {
    if (row.alias) continue;
    if (!out.empty()) out += '|';
    out += row.text;
  }
  return out;
}

template <class E>
std::string kind_name() {
  return Names<E>::kind;
}

template <class E>
E parse(std::string_view text) {
  for (const auto& row : Names<E>::table)
    if (text == row.text) return row.value;
  throw sgdstab::invalid_argument(std::string(Names<E>::kind) + ": expected one of " + choices<E>() + ", got '" +
                                  std::string(text) + "'");
}

#define SGDSTAB_ENUM_TEXT(E)                                   \
  std::string to_string(E value) { return name_of(value); }    \
  template E parse<E>(std::string_view);                       \
  template std::string choices<E>();                           \
  template std::string kind_name<E>();

SGDSTAB_ENUM_TEXT(Status)
SGDSTAB_ENUM_TEXT(Verdict)
SGDSTAB_ENUM_TEXT(Method)
SGDSTAB_ENUM_TEXT(Space)
SGDSTAB_ENUM_TEXT(Sampling)
SGDSTAB_ENUM_TEXT(Schedule)
SGDSTAB_ENUM_TEXT(Device)
SGDSTAB_ENUM_TEXT(Activation)
SGDSTAB_ENUM_TEXT(Parametrization)
SGDSTAB_ENUM_TEXT(Init)
SGDSTAB_ENUM_TEXT(PixelScaling)

#undef SGDSTAB_ENUM_TEXT

}  // namespace sgdstab
