// Data sets: generators, table files, class selection and pixel scaling
// (theory/data.md). The file readers are in data_readers.cpp.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "foundations/check.hpp"
#include "sgdstab/data.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/matrix_io.hpp"
#include "sgdstab/memory.hpp"
#include "sgdstab/random.hpp"

namespace sgdstab {

using Eigen::MatrixXd;
using Eigen::VectorXd;
using detail::fmt;
using detail::require;

namespace {

std::string join(const std::vector<int>& v) {
  std::string s;
  for (std::size_t k = 0; k < v.size(); ++k) s += (k ? "," : "") + std::to_string(v[k]);
  return s;
}

// The first non-finite entry in row-major order; false when there is none.
bool first_non_finite(const MatrixXd& m, Index& row, Index& col) {
  for (Index i = 0; i < m.rows(); ++i)
    for (Index j = 0; j < m.cols(); ++j)
      if (!std::isfinite(m(i, j))) {
        row = i;
        col = j;
        return true;
      }
  return false;
}

}  // namespace

void Dataset::validate() const {
  const std::string where = "Dataset" + (description.empty() ? std::string() : " '" + description + "'");
  require(inputs.rows() >= 1, where, "needs at least one sample (inputs has " + std::to_string(inputs.rows()) + " rows)");
  require(inputs.cols() >= 1, where, "needs input dimension d >= 1 (inputs has 0 columns)");
  require(targets.cols() >= 1, where, "needs at least one output c >= 1 (targets has 0 columns)");
  require(targets.rows() == inputs.rows(), where,
          "inputs has " + std::to_string(inputs.rows()) + " rows but targets has " + std::to_string(targets.rows()));
  require(labels.empty() || static_cast<Index>(labels.size()) == inputs.rows(), where,
          "labels has " + std::to_string(labels.size()) + " entries, expected 0 or n = " +
              std::to_string(inputs.rows()));
  Index r = 0, c = 0;
  if (first_non_finite(inputs, r, c))
    require(false, where, "inputs(" + std::to_string(r) + ", " + std::to_string(c) + ") = " + fmt(inputs(r, c)) +
                              " is not finite");
  if (first_non_finite(targets, r, c))
    require(false, where, "targets(" + std::to_string(r) + ", " + std::to_string(c) + ") = " +
                              fmt(targets(r, c)) + " is not finite");
}

// theory/data.md §3.1: z drawn sample by sample, d normals per sample.
MatrixXd gaussian_inputs(Index n, Index d, std::uint64_t seed) {
  require(n >= 1, "gaussian_inputs", "n = " + std::to_string(n) + " must be >= 1");
  require(d >= 1, "gaussian_inputs", "d = " + std::to_string(d) + " must be >= 1");
  check_memory(8.0 * static_cast<double>(n) * static_cast<double>(d),
               "gaussian_inputs: " + std::to_string(n) + " x " + std::to_string(d) + " matrix");
  Rng rng(seed);
  MatrixXd x(n, d);
  for (Index i = 0; i < n; ++i)
    for (Index j = 0; j < d; ++j) x(i, j) = rng.normal();
  return x;
}

MatrixXd gaussian_inputs(Index n, const VectorXd& covariance_spectrum, std::uint64_t seed) {
  const Index d = covariance_spectrum.size();
  require(d >= 1, "gaussian_inputs", "covariance_spectrum is empty (need d >= 1)");
  for (Index k = 0; k < d; ++k)
    require(std::isfinite(covariance_spectrum(k)) && covariance_spectrum(k) >= 0, "gaussian_inputs",
            "covariance_spectrum(" + std::to_string(k) + ") = " + fmt(covariance_spectrum(k)) +
                " must be finite and >= 0");
  MatrixXd x = gaussian_inputs(n, d, seed);
  x *= covariance_spectrum.cwiseSqrt().asDiagonal();
  return x;
}

VectorXd power_law_spectrum(Index d, double exponent) {
  require(d >= 1, "power_law_spectrum", "d = " + std::to_string(d) + " must be >= 1");
  require(std::isfinite(exponent), "power_law_spectrum", "exponent = " + fmt(exponent) + " must be finite");
  VectorXd s(d);
  for (Index k = 0; k < d; ++k) s(k) = std::pow(static_cast<double>(k + 1), -exponent);
  for (Index k = 0; k < d; ++k)
    require(std::isfinite(s(k)) && s(k) > 0, "power_law_spectrum",
            "exponent = " + fmt(exponent) + " gives s_" + std::to_string(k + 1) + " = " + fmt(s(k)) +
                " (overflow or underflow)");
  return s;
}

// theory/data.md §3.3: x_i = sqrt(a_i) so that h_i = x_i^2 = a_i for f = theta x.
Dataset curvature_dataset(const VectorXd& curvatures) {
  const Index n = curvatures.size();
  require(n >= 1, "curvature_dataset", "curvatures is empty (need n >= 1)");
  for (Index i = 0; i < n; ++i)
    require(std::isfinite(curvatures(i)) && curvatures(i) >= 0, "curvature_dataset",
            "curvatures(" + std::to_string(i) + ") = " + fmt(curvatures(i)) + " must be finite and >= 0");
  Dataset ds;
  ds.inputs = curvatures.cwiseSqrt();
  ds.targets = MatrixXd::Zero(n, 1);
  ds.description = "curvature data set: " + std::to_string(n) + " samples, x_i = sqrt(a_i), y_i = 0";
  return ds;
}

// theory/data.md §3.4.
Dataset regression_1d(Index n, const std::string& function, std::uint64_t seed) {
  require(n >= 1, "regression_1d", "n = " + std::to_string(n) + " must be >= 1");
  double (*g)(double) = nullptr;
  if (function == "sine") g = [](double x) { return std::sin(3.141592653589793 * x); };
  else if (function == "abs") g = [](double x) { return std::abs(x); };
  else if (function == "quadratic") g = [](double x) { return x * x; };
  else if (function == "step") g = [](double x) { return x > 0 ? 1.0 : (x < 0 ? -1.0 : 0.0); };
  require(g != nullptr, "regression_1d",
          "function '" + function + "' is not one of sine, abs, quadratic, step");
  check_memory(16.0 * static_cast<double>(n), "regression_1d: " + std::to_string(n) + " samples");
  Rng rng(seed);
  Dataset ds;
  ds.inputs.resize(n, 1);
  ds.targets.resize(n, 1);
  for (Index i = 0; i < n; ++i) {
    const double x = 2.0 * rng.uniform() - 1.0;
    ds.inputs(i, 0) = x;
    ds.targets(i, 0) = g(x);
  }
  ds.description = "regression_1d " + function + ": " + std::to_string(n) + " samples, seed " + std::to_string(seed);
  return ds;
}

Dataset split_columns(const MatrixXd& table, Index outputs, const std::string& description) {
  const std::string where = "split_columns(" + (description.empty() ? std::string("table") : description) + ")";
  require(table.rows() >= 1, where, "the table has no rows");
  require(outputs >= 1 && outputs < table.cols(), where,
          "outputs = " + std::to_string(outputs) + " must satisfy 1 <= outputs < columns = " +
              std::to_string(table.cols()));
  Dataset ds;
  ds.inputs = table.leftCols(table.cols() - outputs);
  ds.targets = table.rightCols(outputs);
  ds.description = description;
  ds.validate();
  return ds;
}

Dataset read_table_dataset(const std::string& path, Index outputs) {
  const MatrixXd table = read_matrix(path);
  require(outputs >= 1 && outputs < table.cols(), "read_table_dataset(" + path + ")",
          "outputs = " + std::to_string(outputs) + " must satisfy 1 <= outputs < columns = " +
              std::to_string(table.cols()) + " of the file");
  return split_columns(table, outputs,
                       path + " (" + std::to_string(table.rows()) + " samples, " +
                           std::to_string(table.cols() - outputs) + " inputs, " + std::to_string(outputs) +
                           " outputs)");
}

// theory/data.md §6.2.
MatrixXd one_hot(const std::vector<int>& labels, const std::vector<int>& classes) {
  require(!classes.empty(), "one_hot", "classes is empty");
  for (std::size_t j = 0; j < classes.size(); ++j)
    for (std::size_t k = 0; k < j; ++k)
      require(classes[j] != classes[k], "one_hot",
              "class " + std::to_string(classes[j]) + " is listed twice (classes " + join(classes) + ")");
  const Index n = static_cast<Index>(labels.size());
  const Index c = static_cast<Index>(classes.size());
  check_memory(8.0 * static_cast<double>(n) * static_cast<double>(c), "one_hot: " + std::to_string(n) + " x " +
                                                                          std::to_string(c) + " matrix");
  MatrixXd y = MatrixXd::Zero(n, c);
  for (Index i = 0; i < n; ++i) {
    const auto it = std::find(classes.begin(), classes.end(), labels[static_cast<std::size_t>(i)]);
    require(it != classes.end(), "one_hot",
            "labels[" + std::to_string(i) + "] = " + std::to_string(labels[static_cast<std::size_t>(i)]) +
                " is not among the classes " + join(classes));
    y(i, it - classes.begin()) = 1.0;
  }
  return y;
}

// theory/data.md §6.1 (selection) and §6.3 (scaling).
namespace {

// Sample indices of every class, in file order; every label checked.
std::vector<std::vector<Index>> class_members(const LabeledImages& images, int num_classes, const std::string& where) {
  const Index total = images.pixels.rows();
  require(static_cast<Index>(images.labels.size()) == total, where,
          "there are " + std::to_string(images.labels.size()) + " labels for " + std::to_string(total) + " images");
  require(images.pixels.cols() >= 1, where, "the images have no pixels");
  std::vector<std::vector<Index>> members(static_cast<std::size_t>(num_classes));
  for (Index i = 0; i < total; ++i) {
    const int l = images.labels[static_cast<std::size_t>(i)];
    require(l >= 0 && l < num_classes, where,
            "label of sample " + std::to_string(i) + " is " + std::to_string(l) + ", outside [0, " +
                std::to_string(num_classes) + ")");
    members[static_cast<std::size_t>(l)].push_back(i);
  }
  return members;
}

// The first per_class samples (all when 0) of each class, in class order.
std::vector<Index> chosen_samples(const std::vector<std::vector<Index>>& members, const std::vector<int>& classes,
                                  Index per_class, int num_classes, const std::string& where) {
  std::vector<Index> chosen;
  for (std::size_t j = 0; j < classes.size(); ++j) {
    const int k = classes[j];
    require(k >= 0 && k < num_classes, where,
            "class " + std::to_string(k) + " is outside [0, " + std::to_string(num_classes) + ")");
    for (std::size_t m = 0; m < j; ++m)
      require(classes[m] != k, where, "class " + std::to_string(k) + " is listed twice (classes " + join(classes) + ")");
    const auto& mem = members[static_cast<std::size_t>(k)];
    const Index have = static_cast<Index>(mem.size());
    require(have >= 1, where, "class " + std::to_string(k) + " has no samples");
    require(have >= per_class, where,
            "class " + std::to_string(k) + " has " + std::to_string(have) + " samples, " + std::to_string(per_class) +
                " requested");
    chosen.insert(chosen.end(), mem.begin(), mem.begin() + (per_class > 0 ? per_class : have));
  }
  return chosen;
}

// theory/data.md §6.2: pixel bytes -> inputs, statistics per feature over the selected samples.
void scale_pixels(Eigen::MatrixXd& x, PixelScaling scaling) {
  switch (scaling) {
    case PixelScaling::none:
      return;
    case PixelScaling::unit:
      x /= 255.0;
      return;
    case PixelScaling::center:
      x /= 255.0;
      x.rowwise() -= Eigen::RowVectorXd(x.colwise().mean());
      return;
    case PixelScaling::standardize:
      x.rowwise() -= Eigen::RowVectorXd(x.colwise().mean());
      for (Index j = 0; j < x.cols(); ++j) {
        const double sd = std::sqrt(x.col(j).squaredNorm() / static_cast<double>(x.rows()));
        if (sd > 0) x.col(j) /= sd;
        else x.col(j).setZero();
      }
      return;
  }
}

}  // namespace

Dataset select_classes(const LabeledImages& images, const Selection& selection, PixelScaling scaling,
                       const std::string& description, int num_classes) {
  const std::string where = "select_classes(" + (description.empty() ? std::string("images") : description) + ")";
  require(num_classes >= 1, where, "num_classes = " + std::to_string(num_classes) + " must be >= 1");
  require(selection.per_class >= 0, where,
          "per_class = " + std::to_string(selection.per_class) + " must be >= 0 (0 = all)");
  const auto members = class_members(images, num_classes, where);
  std::vector<int> classes = selection.classes;
  if (classes.empty())
    for (int k = 0; k < num_classes; ++k)
      if (!members[static_cast<std::size_t>(k)].empty()) classes.push_back(k);
  require(!classes.empty(), where, "no samples to select");
  const std::vector<Index> chosen = chosen_samples(members, classes, selection.per_class, num_classes, where);
  const Index n = static_cast<Index>(chosen.size()), d = images.pixels.cols();
  check_memory(8.0 * static_cast<double>(n) * static_cast<double>(d + static_cast<Index>(classes.size())),
               where + ": " + std::to_string(n) + " x " + std::to_string(d) + " inputs");
  Dataset ds;
  ds.inputs.resize(n, d);
  ds.labels.resize(static_cast<std::size_t>(n));
  for (Index i = 0; i < n; ++i) {
    const Index src = chosen[static_cast<std::size_t>(i)];
    ds.inputs.row(i) = images.pixels.row(src).cast<double>();
    ds.labels[static_cast<std::size_t>(i)] = images.labels[static_cast<std::size_t>(src)];
  }
  scale_pixels(ds.inputs, scaling);
  ds.targets = one_hot(ds.labels, classes);
  ds.description = description + (description.empty() ? "" : ": ") + "classes " + join(classes) + " x " +
                   (selection.per_class > 0 ? std::to_string(selection.per_class) : std::string("all")) +
                   ", pixels " + to_string(scaling);
  return ds;
}

}  // namespace sgdstab
