// The Python extension sgdstab._core (issue #14): the library's routines on
// NumPy arrays. The package sgdstab (python/sgdstab/__init__.py) re-exports
// it with the documentation; sgdstab.torch adds the PyTorch front end.
//
// Conventions kept here, stated once:
// - Matrices: float64 arrays in C or Fortran order are read in place (no
//   copy); float32 and non-contiguous float64 arrays are converted to a
//   float64 copy; any other dtype is a TypeError.
// - Errors: sgdstab::invalid_argument -> ValueError, io_error -> OSError,
//   resource_error -> MemoryError, numerical_error -> ArithmeticError,
//   interrupted -> KeyboardInterrupt, with the library's messages.
// - The GIL is released while the library computes; Ctrl-C during a call
//   made from the main thread interrupts it (sgdstab/interrupt.hpp).
// - to_dict() of every result is the JSON of the matching CLI command, built
//   by the same code (cli/results.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <exception>
#include <optional>
#include <variant>
#include <string>
#include <vector>

#include "foundations/memory_detail.hpp"
#include "report.hpp"
#include "inputs.hpp"
#include "results.hpp"
#include "sgdstab/sgdstab.hpp"

namespace py = pybind11;
using namespace sgdstab;
using Eigen::MatrixXd;
using Eigen::VectorXd;

namespace {

// ---------------------------------------------------------------- arrays

// A 2-D float64 matrix as the library sees it: a view of the caller's array
// (column- or row-major) or of a converted copy that `keep` owns.
struct MatrixArg {
  py::array keep;
  const double* data = nullptr;
  Index rows = 0, cols = 0, outer_stride = 0;
  bool row_major = false;
  bool copied = false;

  Eigen::Map<const MatrixXd, 0, Eigen::OuterStride<>> col() const {
    return {data, rows, cols, Eigen::OuterStride<>(outer_stride)};
  }
  Eigen::Map<const RowMatrixXd, 0, Eigen::OuterStride<>> row() const {
    return {data, rows, cols, Eigen::OuterStride<>(outer_stride)};
  }
  // Column-major (a copy only when the input is row-major).
  MatrixXd dense() const { return row_major ? MatrixXd(row()) : MatrixXd(col()); }
};

std::string dtype_name(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

py::array as_array(py::handle obj, const std::string& name) {
  if (py::isinstance<py::array>(obj)) return py::reinterpret_borrow<py::array>(obj);
  // Anything with the array protocol (a list, a CPU tensor) becomes an array;
  // its dtype is checked like an array's.
  py::object np = py::module_::import("numpy");
  try {
    return np.attr("asarray")(obj);
  } catch (py::error_already_set&) {
    throw py::type_error(name + ": expected a NumPy array of float64 or float32, got " +
                         py::str(py::type::handle_of(obj)).cast<std::string>());
  }
}

void check_dtype(const py::array& a, const std::string& name) {
  const char kind = a.dtype().kind();
  const auto size = a.dtype().itemsize();
  if (!(kind == 'f' && (size == 8 || size == 4)))
    throw py::type_error(name + ": expected a float64 or float32 array, got dtype " + dtype_name(a));
}

MatrixArg as_matrix(py::handle obj, const std::string& name) {
  py::array a = as_array(obj, name);
  check_dtype(a, name);
  if (a.ndim() != 2)
    throw py::value_error(name + ": expected a 2-D array, got " + std::to_string(a.ndim()) + " dimension(s)");
  MatrixArg m;
  m.rows = a.shape(0);
  m.cols = a.shape(1);
  const bool f64 = a.dtype().itemsize() == 8;
  const auto flags = a.flags();
  if (f64 && (flags & py::array::f_style)) {
    m.keep = a;
    m.outer_stride = m.rows > 0 ? std::max<Index>(1, a.strides(1) / 8) : 1;
  } else if (f64 && (flags & py::array::c_style)) {
    m.keep = a;
    m.row_major = true;
    m.outer_stride = m.cols > 0 ? std::max<Index>(1, a.strides(0) / 8) : 1;
  } else {
    // float32, or a strided float64 view: one float64 copy in Fortran order.
    m.keep = py::array_t<double, py::array::f_style | py::array::forcecast>::ensure(a);
    if (!m.keep) throw py::type_error(name + ": could not convert dtype " + dtype_name(a) + " to float64");
    m.copied = true;
    m.outer_stride = std::max<Index>(1, m.rows);
  }
  m.data = static_cast<const double*>(m.keep.data());
  if (m.rows == 0 || m.cols == 0) m.outer_stride = std::max<Index>(1, m.row_major ? m.cols : m.rows);
  return m;
}

// A vector (any shape; its entries in C order): residuals, start points.
VectorXd as_vector(py::handle obj, const std::string& name) {
  py::array a = as_array(obj, name);
  check_dtype(a, name);
  auto c = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(a);
  return Eigen::Map<const VectorXd>(c.data(), static_cast<Index>(c.size()));
}

py::array to_numpy(const MatrixXd& m) {
  py::array_t<double, py::array::f_style> out({m.rows(), m.cols()});
  if (m.size() > 0) std::copy(m.data(), m.data() + m.size(), out.mutable_data());
  return std::move(out);
}

py::array to_numpy(const VectorXd& v) {
  py::array_t<double> out(v.size());
  if (v.size() > 0) std::copy(v.data(), v.data() + v.size(), out.mutable_data());
  return std::move(out);
}

// A read-only NumPy view of memory owned by `owner` (kept alive as the base).
py::array view_of(const MatrixXd& m, py::handle owner) {
  py::array a(py::dtype::of<double>(), {m.rows(), m.cols()},
              {static_cast<py::ssize_t>(sizeof(double)), static_cast<py::ssize_t>(sizeof(double) * m.rows())},
              m.data(), owner);
  py::detail::array_proxy(a.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return a;
}

py::array view_of(const VectorXd& v, py::handle owner) {
  py::array a(py::dtype::of<double>(), {v.size()}, {static_cast<py::ssize_t>(sizeof(double))}, v.data(), owner);
  py::detail::array_proxy(a.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return a;
}

py::object json_to_python(const cli::json& j) {
  return py::module_::import("json").attr("loads")(j.dump());
}

// ---------------------------------------------------------------- calls

// Releases the GIL around the library's work and, on the main thread, turns
// Ctrl-C into the library's cooperative interrupt for the call's duration.
class Compute {
 public:
  Compute() {
    const py::module_ threading = py::module_::import("threading");
    main_ = threading.attr("current_thread")().is(threading.attr("main_thread")());
    if (main_) {
      clear_interrupt();
      previous_ = std::signal(SIGINT, &Compute::on_signal);
    }
    release_.emplace();
  }
  ~Compute() {
    release_.reset();
    if (!main_) return;
    std::signal(SIGINT, previous_);
    // A Ctrl-C that the library did not act on (a LAPACK call does not poll)
    // is handed to Python, which raises KeyboardInterrupt after the call; an
    // `interrupted` exception in flight becomes KeyboardInterrupt itself.
    if (std::uncaught_exceptions() == 0 && interrupt_requested()) {
      clear_interrupt();
      PyErr_SetInterrupt();
    }
  }
  Compute(const Compute&) = delete;
  Compute& operator=(const Compute&) = delete;

 private:
  static void on_signal(int sig) { request_interrupt(sig); }
  bool main_ = false;
  void (*previous_)(int) = SIG_DFL;
  std::optional<py::gil_scoped_release> release_;
};

// Keywords that are the fields of S's table (include/sgdstab/options.hpp):
// the same names, kinds, rules and defaults as in C++; `what` names the
// table in the TypeError for an unknown keyword.
template <class S>
S options_from_keywords(const py::kwargs& kw, const char* function, const char* what) {
  S s;
  for (const auto& item : kw) {
    const std::string key = py::str(item.first).cast<std::string>();
    const auto& table = option_table<S>();
    const auto f = std::find_if(table.begin(), table.end(), [&](const auto& field) { return field.key == key; });
    if (f == table.end())
      throw py::type_error(std::string(function) + "() got an unexpected keyword argument '" + key + "' (" + what +
                           ": " + option_keys<S>() + ")");
    const py::handle v = item.second;
    switch (f->kind) {
      case OptionKind::flag: f->set(s, v.cast<bool>()); break;
      case OptionKind::integer: f->set(s, v.cast<long long>()); break;
      case OptionKind::real: f->set(s, v.cast<double>()); break;
      case OptionKind::choice: f->set(s, v.cast<std::string>()); break;
    }
  }
  check_fields(s, what);
  return s;
}

// S's table for the docstrings and sgdstab.solver_options() /
// reduction_options(): (keyword, default, help, rule, default in words,
// choices) per field.
template <class S>
py::list option_rows() {
  py::list out;
  const S defaults;
  for (const OptionField<S>& f : option_table<S>()) {
    const OptionValue v = f.get(defaults);
    py::object value = std::visit([](const auto& x) -> py::object { return py::cast(x); }, v);
    const std::string choices = f.kind == OptionKind::choice ? f.metavar : "";
    out.append(py::make_tuple(f.key, value, f.help, f.rule, f.default_words, choices));
  }
  return out;
}

// The solver's keywords: SolverOptions' table (lib/foundations/options.cpp).
SolverOptions solver_options(const py::kwargs& kw, const char* function) {
  return options_from_keywords<SolverOptions>(kw, function, "solver options");
}

// momentum=BETA and nesterov=BOOL, taken out of the keyword arguments.
std::optional<Momentum> momentum_of(py::kwargs& kw) {
  std::optional<Momentum> m;
  const bool has_beta = kw.contains("momentum") && !kw["momentum"].is_none();
  const bool nesterov = kw.contains("nesterov") && kw["nesterov"].cast<bool>();
  if (has_beta) {
    m = Momentum{kw["momentum"].cast<double>(), nesterov};
    m->validate();
  } else if (nesterov) {
    throw sgdstab::invalid_argument("nesterov=True needs momentum=BETA");
  }
  if (kw.contains("momentum")) PyDict_DelItemString(kw.ptr(), "momentum");
  if (kw.contains("nesterov")) PyDict_DelItemString(kw.ptr(), "nesterov");
  return m;
}

// weight_decay=LAMBDA, taken out of the keyword arguments (None or absent: none).
std::optional<double> weight_decay_of(py::kwargs& kw) {
  std::optional<double> wd;
  if (kw.contains("weight_decay")) {
    if (!kw["weight_decay"].is_none()) wd = kw["weight_decay"].cast<double>();
    PyDict_DelItemString(kw.ptr(), "weight_decay");
  }
  return wd;
}

std::vector<Sampling> schemes_of(const py::object& sampling) {
  if (sampling.is_none()) return {Sampling::without_replacement, Sampling::with_replacement, Sampling::bernoulli};
  if (py::isinstance<py::str>(sampling)) return {parse<Sampling>(sampling.cast<std::string>())};
  std::vector<Sampling> out;
  for (const py::handle s : sampling) out.push_back(parse<Sampling>(s.cast<std::string>()));
  return out;
}

// ---------------------------------------------------------------- results

struct PyThreshold {
  ThresholdResult r;
  cli::json j;
};
struct PyRadius {
  RadiusResult r;
  cli::json j;
};
struct PyCurve {
  std::vector<PyThreshold> points;
  cli::json j;
};
struct PyRegion {
  StabilityRegion region;
  cli::json j;
  Status status = Status::not_converged;
};
struct PyMomentumThreshold {
  MomentumThresholdResult r;
  cli::json j;
};
struct PyBounds {
  StabilityBounds b;
  cli::json j;
};
struct PyBand {
  BandResult r;
  cli::json j;
};
struct PyCrossCheck {
  CrossCheckReport rep;
  cli::json j;
};

py::object optional_matrix(const MatrixXd& m) {
  if (m.size() == 0) return py::none();
  return to_numpy(m);
}

template <class T>
py::object optional_value(const std::optional<T>& v) {
  return v ? py::cast(*v) : py::none();
}

// The reduction's keywords: ReductionOptions' table (lib/geometry/reduction_options.cpp).
Geometry geometry_from_jacobian(py::handle j, Index outputs, const py::kwargs& kw) {
  const ReductionOptions o = options_from_keywords<ReductionOptions>(kw, "from_jacobian", "reduction options");
  const MatrixArg a = as_matrix(j, "jacobian");
  Compute c;
  return a.row_major ? Geometry::from_row_major_jacobian(a.row(), outputs, o) : Geometry::from_jacobian(a.col(), outputs, o);
}

Geometry geometry_from_gram(py::handle k, Index outputs, const py::kwargs& kw) {
  const ReductionOptions o = options_from_keywords<ReductionOptions>(kw, "from_gram", "reduction options");
  const MatrixArg a = as_matrix(k, "gram");
  Compute c;
  // A row-major K is the column-major K^T: the same symmetric matrix (the
  // reduction symmetrizes (K + K^T) / 2, identical either way).
  if (a.row_major) return Geometry::from_gram(Eigen::Map<const MatrixXd, 0, Eigen::OuterStride<>>(
                                                  a.data, a.cols, a.rows, Eigen::OuterStride<>(a.outer_stride)),
                                              outputs, o);
  return Geometry::from_gram(a.col(), outputs, o);
}

// The library's exceptions as Python's built-in ones; the version and the loss convention.
void bind_errors(py::module_& m) {
  m.doc() = "sgdstab's compiled core (use the package sgdstab)";

  // Exceptions: the library's classes to Python's built-in ones.
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const sgdstab::invalid_argument& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const sgdstab::io_error& e) {
      PyErr_SetString(PyExc_OSError, e.what());
    } catch (const sgdstab::resource_error& e) {
      PyErr_SetString(PyExc_MemoryError, e.what());
    } catch (const sgdstab::numerical_error& e) {
      PyErr_SetString(PyExc_ArithmeticError, e.what());
    } catch (const sgdstab::interrupted& e) {
      clear_interrupt();
      PyErr_SetString(PyExc_KeyboardInterrupt, e.what());
    }
  });

  m.attr("__version__") = "0.1.0";
  m.attr("loss_convention") = cli::kLossConvention;
}

// Geometry: from a Jacobian or a Gram, its spectrum and scale.
void bind_geometry(py::module_& m) {
  // ------------------------------------------------------------ Geometry
  py::class_<Geometry>(m, "Geometry")
      .def_static("from_jacobian", &geometry_from_jacobian, py::arg("jacobian"), py::arg("outputs") = 1)
      .def_static("from_gram", &geometry_from_gram, py::arg("gram"), py::arg("outputs"))
      .def_property_readonly("lambda_max", &Geometry::lambda_max)
      .def_property_readonly("hessian_frobenius", &Geometry::hessian_frobenius)
      .def_property_readonly("hessian_trace", &Geometry::hessian_trace)
      .def_property_readonly("eta_gd", [](const Geometry& g) { return 2.0 / g.lambda_max(); })
      .def_property_readonly("rank", &Geometry::rank)
      .def_property_readonly("samples", &Geometry::samples)
      .def_property_readonly("outputs", &Geometry::outputs)
      .def_property_readonly("params",
                             [](const Geometry& g) { return g.params() > 0 ? py::cast(g.params()) : py::none(); })
      .def_property_readonly("space", [](const Geometry& g) { return to_string(g.space()); })
      .def_property_readonly("largest_discarded", &Geometry::largest_discarded)
      .def_property_readonly("hessian_eigenvalues",
                             [](py::object self) {
                               return view_of(self.cast<const Geometry&>().hessian_eigenvalues(), self);
                             })
      .def_property_readonly("factor",
                             [](py::object self) { return view_of(self.cast<const Geometry&>().factor(), self); })
      .def("per_sample_hessian", [](const Geometry& g, Index i) { return to_numpy(g.per_sample_hessian(i)); },
           py::arg("i"))
      .def("__repr__", [](const Geometry& g) {
        return "<sgdstab.Geometry n=" + std::to_string(g.samples()) + " C=" + std::to_string(g.outputs()) +
               " rank=" + std::to_string(g.rank()) + " lambda_max=" + py::repr(py::float_(g.lambda_max())).cast<std::string>() + ">";
      });
}

// The report of a result (sgdstab::Result, solver.hpp), read the same way on
// every result class: converged, status, message and the counters.
// `result` maps the Python object to its sgdstab::Result.
template <class C, class F>
void def_report(py::class_<C>& cls, F result) {
  cls.def_property_readonly("converged", [result](const C& c) { return result(c).converged(); })
      .def_property_readonly("status", [result](const C& c) { return to_string(result(c).status()); })
      .def_property_readonly("message", [result](const C& c) { return result(c).report.message; })
      .def_property_readonly("matvecs", [result](const C& c) { return result(c).report.matvecs; })
      .def_property_readonly("matvecs_single_precision",
                             [result](const C& c) { return result(c).report.single_precision_matvecs; })
      .def_property_readonly("iterations", [result](const C& c) { return result(c).report.iterations; })
      .def_property_readonly("method", [result](const C& c) { return to_string(result(c).report.method); })
      .def_property_readonly("residual", [result](const C& c) { return result(c).report.residual; })
      .def_property_readonly("error_bound", [result](const C& c) { return result(c).report.error_bound; })
      .def_property_readonly("seconds", [result](const C& c) { return result(c).report.seconds; });
}

// eta*, momentum eta* and rho: the results.
void bind_threshold_results(py::module_& m) {
  py::class_<PyThreshold> threshold(m, "ThresholdResult");
  def_report(threshold, [](const PyThreshold& t) -> const Result& { return t.r; });
  threshold
      .def_property_readonly("eta_star", [](const PyThreshold& t) { return t.r.eta_star; })
      .def_property_readonly("pencil_max", [](const PyThreshold& t) { return t.r.pencil_max; })
      .def_property_readonly("batch", [](const PyThreshold& t) { return t.r.batch; })
      .def_property_readonly("sampling", [](const PyThreshold& t) { return to_string(t.r.sampling); })
      .def_property_readonly("direction", [](const PyThreshold& t) { return optional_matrix(t.r.direction); })
      .def("to_dict", [](const PyThreshold& t) { return json_to_python(t.j); })
      .def("__repr__", [](const PyThreshold& t) {
        return "<sgdstab.ThresholdResult eta_star=" + py::repr(py::float_(t.r.eta_star)).cast<std::string>() +
               " batch=" + std::to_string(t.r.batch) + " sampling=" + to_string(t.r.sampling) +
               " status=" + to_string(t.r.status()) + ">";
      });

  py::class_<PyMomentumThreshold> momentum(m, "MomentumThresholdResult");
  def_report(momentum, [](const PyMomentumThreshold& t) -> const Result& { return t.r; });
  momentum
      .def_property_readonly("eta_star", [](const PyMomentumThreshold& t) { return t.r.eta_star; })
      .def_property_readonly("eta_low", [](const PyMomentumThreshold& t) { return t.r.eta_low; })
      .def_property_readonly("eta_high", [](const PyMomentumThreshold& t) { return t.r.eta_high; })
      .def_property_readonly("eta_mean", [](const PyMomentumThreshold& t) { return t.r.eta_mean; })
      .def_property_readonly("batch", [](const PyMomentumThreshold& t) { return t.r.batch; })
      .def_property_readonly("sampling", [](const PyMomentumThreshold& t) { return to_string(t.r.sampling); })
      .def_property_readonly("momentum", [](const PyMomentumThreshold& t) { return t.r.momentum.beta; })
      .def_property_readonly("nesterov", [](const PyMomentumThreshold& t) { return t.r.momentum.nesterov; })
      .def_property_readonly("stable_intervals", [](const PyMomentumThreshold& t) { return t.r.stable_intervals; })
      .def_property_readonly("evaluations", [](const PyMomentumThreshold& t) { return t.r.evaluations; })
      .def("to_dict", [](const PyMomentumThreshold& t) { return json_to_python(t.j); })
      .def("__repr__", [](const PyMomentumThreshold& t) {
        return "<sgdstab.MomentumThresholdResult eta_star=" + py::repr(py::float_(t.r.eta_star)).cast<std::string>() +
               " momentum=" + py::repr(py::float_(t.r.momentum.beta)).cast<std::string>() +
               (t.r.momentum.nesterov ? " nesterov" : "") + " status=" + to_string(t.r.status()) + ">";
      });

  py::class_<PyRadius> radius(m, "RadiusResult");
  def_report(radius, [](const PyRadius& t) -> const Result& { return t.r; });
  radius
      .def_property_readonly("rho", [](const PyRadius& t) { return t.r.rho; })
      .def_property_readonly("lr", [](const PyRadius& t) { return t.r.lr; })
      .def_property_readonly("batch", [](const PyRadius& t) { return t.r.batch; })
      .def_property_readonly("sampling", [](const PyRadius& t) { return to_string(t.r.sampling); })
      .def_property_readonly("stable", [](const PyRadius& t) { return t.r.rho <= 1.0; })
      .def_property_readonly("direction", [](const PyRadius& t) { return optional_matrix(t.r.direction); })
      .def("to_dict", [](const PyRadius& t) { return json_to_python(t.j); })
      .def("__repr__", [](const PyRadius& t) {
        return "<sgdstab.RadiusResult rho=" + py::repr(py::float_(t.r.rho)).cast<std::string>() +
               " status=" + to_string(t.r.status()) + ">";
      });
}

// Curves and regions: the results.
void bind_region_results(py::module_& m) {
  py::class_<PyCurve>(m, "CurveResult")
      .def_property_readonly("points", [](const PyCurve& c) { return c.points; })
      .def_property_readonly("batches",
                             [](const PyCurve& c) {
                               std::vector<Index> out;
                               for (const auto& p : c.points) out.push_back(p.r.batch);
                               return out;
                             })
      .def_property_readonly("eta_star",
                             [](const PyCurve& c) {
                               std::vector<double> out;
                               for (const auto& p : c.points) out.push_back(p.r.eta_star);
                               return out;
                             })
      .def_property_readonly("converged",
                             [](const PyCurve& c) {
                               for (const auto& p : c.points)
                                 if (!p.r.converged()) return false;
                               return true;
                             })
      .def("to_dict", [](const PyCurve& c) { return json_to_python(c.j); });

  py::class_<RegionPoint> point(m, "RegionPoint");
  def_report(point, [](const RegionPoint& p) -> const Result& { return p; });
  point.def_readonly("batch", &RegionPoint::batch)
      .def_readonly("eta_star", &RegionPoint::eta_star)
      .def_readonly("eta_low", &RegionPoint::eta_low)
      .def_readonly("eta_high", &RegionPoint::eta_high)
      .def("__repr__", [](const RegionPoint& p) {
        return "<sgdstab.RegionPoint batch=" + std::to_string(p.batch) +
               " eta_star=" + py::repr(py::float_(p.eta_star)).cast<std::string>() + ">";
      });
  py::class_<RegionCurve>(m, "RegionCurve")
      .def_property_readonly("sampling", [](const RegionCurve& c) { return to_string(c.sampling); })
      .def_readonly("points", &RegionCurve::points);

  py::class_<PyRegion>(m, "RegionResult")
      .def_property_readonly("curves", [](const PyRegion& r) { return r.region.curves; })
      .def_property_readonly("matvecs", [](const PyRegion& r) { return r.region.report.matvecs; })
      .def_property_readonly("matvecs_single_precision",
                             [](const PyRegion& r) { return r.region.report.single_precision_matvecs; })
      .def_property_readonly("seconds", [](const PyRegion& r) { return r.region.report.seconds; })
      .def_property_readonly("lambda_max", [](const PyRegion& r) { return r.region.lambda_max; })
      .def_property_readonly("eta_gd", [](const PyRegion& r) { return r.region.eta_gd; })
      .def_property_readonly("converged", [](const PyRegion& r) { return r.status == Status::converged; })
      .def_property_readonly("status", [](const PyRegion& r) { return to_string(r.status); })
      .def_property_readonly("message", [](const PyRegion& r) { return r.region.report.message; })
      .def(
          "band",
          [](const PyRegion& r, const std::string& sampling, double batch) {
            const EtaInterval e = r.region.band(parse<Sampling>(sampling), batch);
            return std::make_pair(e.low, e.high);
          },
          py::arg("sampling"), py::arg("batch"),
          "Guaranteed (low, high) interval for eta*(B) at any real B in [1, n] (theory/region.md, section 6).")
      .def("to_dict", [](const PyRegion& r) { return json_to_python(r.j); });
}

// Bounds, worst-case alignment and the Monte Carlo cross-check: the results.
void bind_analysis_results(py::module_& m) {
  py::class_<PyBounds> bounds(m, "BoundsResult");
  def_report(bounds, [](const PyBounds& t) -> const Result& { return t.b; });
  bounds.def_property_readonly("batch", [](const PyBounds& t) { return t.b.batch; })
      .def_property_readonly("sampling", [](const PyBounds& t) { return to_string(t.b.sampling); })
      .def_property_readonly("gamma", [](const PyBounds& t) { return t.b.gamma; })
      .def_property_readonly("eta_star", [](const PyBounds& t) { return t.b.eta_star; })
      .def_property_readonly("eta_gd", [](const PyBounds& t) { return t.b.eta_gd; })
      .def_property_readonly("eta_sufficient", [](const PyBounds& t) { return t.b.eta_sufficient; })
      .def_property_readonly("eta_necessary_rank1", [](const PyBounds& t) { return t.b.eta_necessary_rank1; })
      .def_property_readonly("eta_necessary_trace", [](const PyBounds& t) { return t.b.eta_necessary_trace; })
      .def_property_readonly("eta_alignment", [](const PyBounds& t) { return optional_value(t.b.eta_alignment); })
      .def_property_readonly("eta_trace_b1", [](const PyBounds& t) { return optional_value(t.b.eta_trace_b1); })
      .def_property_readonly("mu_star", [](const PyBounds& t) { return t.b.mu_star; })
      .def_property_readonly("sharpness", [](const PyBounds& t) { return t.b.sharpness; })
      .def_property_readonly("non_uniformity", [](const PyBounds& t) { return t.b.non_uniformity; })
      .def_property_readonly("hessian_frobenius", [](const PyBounds& t) { return t.b.hessian_frobenius; })
      .def_property_readonly("hessian_trace", [](const PyBounds& t) { return t.b.hessian_trace; })
      .def("escape_factor", [](const PyBounds& t, double lr) { return t.b.escape_factor(lr); }, py::arg("lr"))
      .def("to_dict", [](const PyBounds& t) { return json_to_python(t.j); });

  py::class_<WorstAlignment> worst(m, "WorstAlignment");
  def_report(worst, [](const WorstAlignment& w) -> const Result& { return w; });
  worst.def_readonly("mu_star", &WorstAlignment::mu_star)
      .def_property_readonly("residual_direction", [](const WorstAlignment& w) { return to_numpy(w.residual_direction); });

  py::class_<HessianMeasures> measures(m, "HessianMeasures");
  def_report(measures, [](const HessianMeasures& h) -> const Result& { return h; });
  measures.def_readonly("samples", &HessianMeasures::samples)
      .def_readonly("outputs", &HessianMeasures::outputs)
      .def_readonly("sharpness", &HessianMeasures::sharpness)
      .def_readonly("non_uniformity", &HessianMeasures::non_uniformity)
      .def_readonly("hessian_frobenius", &HessianMeasures::hessian_frobenius)
      .def_readonly("hessian_trace", &HessianMeasures::hessian_trace)
      .def("to_dict", [](const HessianMeasures& h) {
        py::dict d;
        d["samples"] = h.samples;
        d["outputs"] = h.outputs;
        d["sharpness"] = h.sharpness;
        d["non_uniformity"] = h.non_uniformity;
        d["hessian_frobenius"] = h.hessian_frobenius;
        d["hessian_trace"] = h.hessian_trace;
        d["converged"] = h.converged();
        d["status"] = to_string(h.status());
        d["message"] = h.report.message;
        d["method"] = to_string(h.report.method);
        d["iterations"] = h.report.iterations;
        d["matvecs"] = h.report.matvecs;
        d["error_bound"] = h.report.error_bound;
        d["seconds"] = h.report.seconds;
        return d;
      })
      .def("__repr__", [](const HessianMeasures& h) {
        const auto f = [](double x) { return py::repr(py::float_(x)).cast<std::string>(); };
        return "<sgdstab.HessianMeasures sharpness=" + f(h.sharpness) + " non_uniformity=" + f(h.non_uniformity) +
               " hessian_frobenius=" + f(h.hessian_frobenius) + " status=" + to_string(h.status()) + ">";
      });

  py::class_<PyCrossCheck>(m, "MonteCarloResult")
      .def_property_readonly("rho", [](const PyCrossCheck& c) { return optional_value(c.rep.rho); })
      .def_property_readonly("eta_star", [](const PyCrossCheck& c) { return optional_value(c.rep.eta_star); })
      .def_property_readonly("rho_hat", [](const PyCrossCheck& c) { return c.rep.radius.rho_hat; })
      .def_property_readonly("rho_hat_interval",
                             [](const PyCrossCheck& c) { return std::make_pair(c.rep.radius.ci_low, c.rep.radius.ci_high); })
      .def_property_readonly("verdict", [](const PyCrossCheck& c) { return to_string(c.rep.verdict); })
      .def_property_readonly("status", [](const PyCrossCheck& c) { return to_string(c.rep.status()); })
      .def_property_readonly("reason", [](const PyCrossCheck& c) { return c.rep.reason; })
      .def("to_dict", [](const PyCrossCheck& c) { return json_to_python(c.j); });
}

// momentum_threshold, momentum_curve.
void bind_momentum(py::module_& m) {
  // ------------------------------------------------------------ functions
  m.def(
      "momentum_threshold",
      [](const Geometry& g, Index batch, const std::string& sampling, double beta, bool nesterov, Index scan_points,
         double weight_decay, py::kwargs kw) {
        const Sampling s = parse<Sampling>(sampling);
        const SolverOptions so = solver_options(kw, "threshold");
        PyMomentumThreshold out;
        {
          Compute c;
          out.r = weight_decay_momentum_threshold(g, batch, s, Momentum{beta, nesterov}, weight_decay, so, scan_points);
        }
        out.j = cli::with_options(cli::momentum_threshold_json(g, out.r), so);
        return out;
      },
      py::arg("geometry"), py::arg("batch"), py::arg("sampling"), py::arg("momentum"), py::arg("nesterov"),
      py::arg("scan_points"), py::arg("weight_decay") = 0.0);

  m.def(
      "momentum_curve",
      [](const Geometry& g, std::optional<std::vector<Index>> batches, const std::string& sampling, double beta,
         bool nesterov, double weight_decay, py::kwargs kw) {
        const Sampling s = parse<Sampling>(sampling);
        const SolverOptions so = solver_options(kw, "curve");
        const std::vector<Index> b = batches ? *batches : default_batches(g.samples());
        std::vector<MomentumThresholdResult> curve;
        {
          Compute c;
          curve = weight_decay_momentum_threshold_curve(g, b, s, Momentum{beta, nesterov}, weight_decay, so);
        }
        py::list points;
        for (const auto& r : curve) points.append(PyMomentumThreshold{r, cli::momentum_threshold_json(g, r)});
        return py::make_tuple(points, json_to_python(cli::with_options(cli::momentum_curve_json(g, curve), so)));
      },
      py::arg("geometry"), py::arg("batches"), py::arg("sampling"), py::arg("momentum"), py::arg("nesterov"),
      py::arg("weight_decay") = 0.0);
}

// What `--optimizer adam` (adamw with a decoupled weight decay wd > 0) adds to a result's JSON (cli/inputs.cpp).
// Adam's (beta1 > 0) or RMSProp's own L2 decay: the optimizer, beta1 and the
// decay; no eta_gd (the full-batch limit is eta_mean).
void adam_l2_json(cli::json& j, double beta1, double weight_decay) {
  j["optimizer"] = beta1 > 0.0 ? "adam" : "rmsprop";
  j["beta1"] = beta1;
  cli::adam_fields(j);
  j["weight_decay"] = weight_decay;
}

void adam_json(cli::json& j, double beta1, double weight_decay = 0.0) {
  j["optimizer"] = weight_decay > 0.0 ? "adamw" : "adam";
  j["beta1"] = beta1;
  cli::adam_fields(j);
  if (weight_decay > 0.0) {
    j["weight_decay"] = weight_decay;
    j["weight_decay_decoupled"] = true;
  }
}

// Losses with per-sample curvature, frozen preconditioners, Adam
// (theory/loss_curvature.md, theory/adaptive.md).
void bind_adaptive(py::module_& m) {
  m.def(
      "softmax_curvature",
      [](py::handle probabilities) {
        const MatrixXd p = as_matrix(probabilities, "probabilities").dense();
        return to_numpy(softmax_curvature(p));
      },
      py::arg("probabilities"));
  m.def(
      "apply_curvature",
      [](py::handle jacobian, py::handle curvature, Index outputs) {
        const MatrixXd j = as_matrix(jacobian, "jacobian").dense();
        const MatrixXd s = as_matrix(curvature, "curvature").dense();
        return to_numpy(apply_curvature_to_jacobian(j, s, outputs));
      },
      py::arg("jacobian"), py::arg("curvature"), py::arg("outputs"));
  m.def(
      "apply_curvature_to_gram",
      [](py::handle gram, py::handle curvature, Index outputs) {
        const MatrixXd k = as_matrix(gram, "gram").dense();
        const MatrixXd s = as_matrix(curvature, "curvature").dense();
        return to_numpy(apply_curvature_to_gram(k, s, outputs));
      },
      py::arg("gram"), py::arg("curvature"), py::arg("outputs"));
  m.def(
      "precondition",
      [](py::handle jacobian, py::handle preconditioner) {
        const MatrixXd j = as_matrix(jacobian, "jacobian").dense();
        return to_numpy(precondition_jacobian(j, as_vector(preconditioner, "preconditioner")));
      },
      py::arg("jacobian"), py::arg("preconditioner"));
  m.def(
      "adam_threshold",
      [](const Geometry& g, Index batch, const std::string& sampling, double beta1, Index scan_points,
         double weight_decay, py::kwargs kw) {
        const Sampling s = parse<Sampling>(sampling);
        const SolverOptions so = solver_options(kw, "adam_threshold");
        PyMomentumThreshold out;
        {
          Compute c;
          out.r = weight_decay != 0.0 ? adamw_threshold(g, batch, s, beta1, weight_decay, so, scan_points)
                                      : adam_threshold(g, batch, s, beta1, so, scan_points);
        }
        out.j = cli::with_options(cli::momentum_threshold_json(g, out.r), so);
        adam_json(out.j, beta1, weight_decay);
        return out;
      },
      py::arg("geometry"), py::arg("batch"), py::arg("sampling"), py::arg("beta1"), py::arg("scan_points"),
      py::arg("weight_decay") = 0.0);
  m.def(
      "adam_curve",
      [](const Geometry& g, std::optional<std::vector<Index>> batches, const std::string& sampling, double beta1,
         double weight_decay, py::kwargs kw) {
        const Sampling s = parse<Sampling>(sampling);
        SolverOptions so = solver_options(kw, "adam_curve");
        so.want_direction = false;
        const std::vector<Index> b = batches ? *batches : default_batches(g.samples());
        std::vector<MomentumThresholdResult> curve;
        {
          Compute c;
          curve = weight_decay != 0.0 ? adamw_threshold_curve(g, b, s, beta1, weight_decay, so)
                                      : adam_threshold_curve(g, b, s, beta1, so);
        }
        py::list points;
        for (const auto& r : curve) {  // each point's JSON as adam_threshold's (no GD eta_gd: not Adam's limit)
          cli::json pj = cli::momentum_threshold_json(g, r);
          adam_json(pj, beta1, weight_decay);
          points.append(PyMomentumThreshold{r, pj});
        }
        cli::json j = cli::with_options(cli::momentum_curve_json(g, curve), so);
        adam_json(j, beta1, weight_decay);
        return py::make_tuple(points, json_to_python(j));
      },
      py::arg("geometry"), py::arg("batches"), py::arg("sampling"), py::arg("beta1"), py::arg("weight_decay") = 0.0);
  m.def(
      "adam_l2_curve",
      [](py::handle jacobian, Index outputs, py::handle preconditioner, std::vector<Index> batches,
         const std::string& sampling, double beta1, double weight_decay, py::kwargs kw) {
        // Adam's or RMSProp's own L2 decay (theory/adaptive.md, section 6), from the Jacobian and P.
        const Sampling s = parse<Sampling>(sampling);
        SolverOptions so = solver_options(kw, "adam_l2_curve");
        so.want_direction = false;
        const MatrixXd j = as_matrix(jacobian, "jacobian").dense();
        const Eigen::VectorXd pre = as_vector(preconditioner, "preconditioner");
        std::vector<MomentumThresholdResult> curve;
        std::optional<Geometry> g;
        {
          Compute c;
          g.emplace(Geometry::from_jacobian(precondition_jacobian(j, pre), outputs));
          curve = adam_l2_threshold_curve(j, outputs, pre, batches, s, beta1, weight_decay, so);
        }
        py::list points;
        for (const auto& r : curve) {
          cli::json pj = cli::momentum_threshold_json(*g, r);
          adam_l2_json(pj, beta1, weight_decay);
          points.append(PyMomentumThreshold{r, pj});
        }
        cli::json out = cli::with_options(cli::momentum_curve_json(*g, curve), so);
        adam_l2_json(out, beta1, weight_decay);
        return py::make_tuple(points, json_to_python(out));
      },
      py::arg("jacobian"), py::arg("outputs"), py::arg("preconditioner"), py::arg("batches"), py::arg("sampling"),
      py::arg("beta1"), py::arg("weight_decay"));
  m.def(
      "adam_radius",
      [](const Geometry& g, double lr, Index batch, const std::string& sampling, double beta1, double weight_decay,
         py::kwargs kw) {
        const Sampling s = parse<Sampling>(sampling);
        const SolverOptions so = solver_options(kw, "adam_radius");
        PyRadius out;
        {
          Compute c;
          out.r = weight_decay != 0.0 ? adamw_spectral_radius(g, lr, batch, s, beta1, weight_decay, so)
                                      : adam_spectral_radius(g, lr, batch, s, beta1, so);
        }
        out.j = cli::with_options(cli::momentum_radius_json(g, out.r, Momentum{beta1, false}), so);
        adam_json(out.j, beta1, weight_decay);
        return out;
      },
      py::arg("geometry"), py::arg("lr"), py::arg("batch"), py::arg("sampling"), py::arg("beta1"),
      py::arg("weight_decay") = 0.0);
  m.def(
      "adam_l2_radius",
      [](py::handle jacobian, Index outputs, py::handle preconditioner, double lr, Index batch,
         const std::string& sampling, double beta1, double weight_decay, py::kwargs kw) {
        // Adam's or RMSProp's own L2 decay (theory/adaptive.md, section 6): rho on the whole state.
        const Sampling s = parse<Sampling>(sampling);
        const SolverOptions so = solver_options(kw, "adam_l2_radius");
        const MatrixXd j = as_matrix(jacobian, "jacobian").dense();
        const Eigen::VectorXd pre = as_vector(preconditioner, "preconditioner");
        PyRadius out;
        std::optional<Geometry> g;
        {
          Compute c;
          g.emplace(Geometry::from_jacobian(precondition_jacobian(j, pre), outputs));
          out.r = adam_l2_spectral_radius(j, outputs, pre, lr, batch, s, beta1, weight_decay, so);
        }
        out.j = cli::with_options(cli::momentum_radius_json(*g, out.r, Momentum{beta1, false}, weight_decay), so);
        adam_l2_json(out.j, beta1, weight_decay);
        return out;
      },
      py::arg("jacobian"), py::arg("outputs"), py::arg("preconditioner"), py::arg("lr"), py::arg("batch"),
      py::arg("sampling"), py::arg("beta1"), py::arg("weight_decay"));
}

// The stationary covariance (theory/covariance.md): (the JSON of `sgdstab covariance`, Sigma).
void bind_covariance(py::module_& m) {
  m.def(
      "covariance",
      [](const Geometry& g, py::handle residuals, double lr, Index batch, const std::string& sampling, Index top,
         double gradient_tolerance, double tolerance, Index max_iterations, double momentum, bool nesterov,
         double weight_decay, py::handle theta, py::handle jacobian) {
        const Sampling s = parse<Sampling>(sampling);
        const VectorXd r = as_vector(residuals, "residuals");
        CovarianceOptions o;
        o.momentum = Momentum{momentum, nesterov};
        o.top = top;
        o.gradient_tolerance = gradient_tolerance;
        o.tolerance = tolerance;
        o.max_iterations = max_iterations;
        o.weight_decay = weight_decay;
        if (!theta.is_none())  // weight decay: theta* in the geometry's coordinates through its Jacobian
          o.parameters = reduced_parameters(g, as_matrix(jacobian, "jacobian").dense(), as_vector(theta, "theta"),
                                            gradient_tolerance);
        CovarianceResult res;
        {
          Compute c;
          res = stationary_covariance(g, r, lr, batch, s, o);
        }
        return py::make_tuple(json_to_python(cli::covariance_json(g, res)), to_numpy(res.covariance));
      },
      py::arg("geometry"), py::arg("residuals"), py::arg("lr"), py::arg("batch"), py::arg("sampling"), py::arg("top"),
      py::arg("gradient_tolerance"), py::arg("tolerance"), py::arg("max_iterations"), py::arg("momentum") = 0.0,
      py::arg("nesterov") = false, py::arg("weight_decay") = 0.0, py::arg("theta") = py::none(),
      py::arg("jacobian") = py::none());
  m.def(
      "covariance_from_gradients",
      [](const Geometry& g, py::handle jacobian, py::handle gradients, double lr, Index batch,
         const std::string& sampling, Index top, double gradient_tolerance, double tolerance, Index max_iterations,
         double momentum, bool nesterov, double weight_decay, py::handle theta, double decoupled_weight_decay) {
        const Sampling s = parse<Sampling>(sampling);
        const MatrixXd j = as_matrix(jacobian, "jacobian").dense();
        const MatrixXd gr = as_matrix(gradients, "gradients").dense();
        CovarianceOptions o;
        o.momentum = Momentum{momentum, nesterov};
        o.top = top;
        o.gradient_tolerance = gradient_tolerance;
        o.tolerance = tolerance;
        o.max_iterations = max_iterations;
        o.weight_decay = weight_decay;
        o.decoupled_weight_decay = decoupled_weight_decay;
        if (!theta.is_none()) o.parameters = reduced_parameters(g, j, as_vector(theta, "theta"), gradient_tolerance);
        CovarianceResult res;
        {
          Compute c;
          res = stationary_covariance_from_gradients(g, reduced_gradients(g, j, gr), lr, batch, s, o);
        }
        return py::make_tuple(json_to_python(cli::covariance_json(g, res)), to_numpy(res.covariance));
      },
      py::arg("geometry"), py::arg("jacobian"), py::arg("gradients"), py::arg("lr"), py::arg("batch"),
      py::arg("sampling"), py::arg("top"), py::arg("gradient_tolerance"), py::arg("tolerance"),
      py::arg("max_iterations"), py::arg("momentum") = 0.0, py::arg("nesterov") = false,
      py::arg("weight_decay") = 0.0, py::arg("theta") = py::none(), py::arg("decoupled_weight_decay") = 0.0);
}

// threshold, radius, curve.
void bind_solvers(py::module_& m) {
  m.def(
      "threshold",
      [](const Geometry& g, Index batch, const std::string& sampling, py::kwargs kw) {
        const Sampling s = parse<Sampling>(sampling);
        const std::optional<double> wd = weight_decay_of(kw);
        const SolverOptions so = solver_options(kw, "threshold");
        PyThreshold out;
        {
          Compute c;
          out.r = wd ? weight_decay_threshold(g, batch, s, *wd, so) : stability_threshold(g, batch, s, so);
        }
        out.j = cli::with_options(cli::threshold_json(g, out.r), so);
        out.j["weight_decay"] = wd.value_or(0.0);
        out.j["eta_gd"] = 2.0 / (g.lambda_max() + wd.value_or(0.0));  // as `sgdstab threshold --weight-decay`
        return out;
      },
      py::arg("geometry"), py::arg("batch"), py::arg("sampling") = "without");

  m.def(
      "radius",
      [](const Geometry& g, double lr, Index batch, const std::string& sampling, py::kwargs kw) {
        const Sampling s = parse<Sampling>(sampling);
        const std::optional<Momentum> mo = momentum_of(kw);
        const std::optional<double> wd = weight_decay_of(kw);
        const SolverOptions so = solver_options(kw, "radius");
        PyRadius out;
        {
          Compute c;
          out.r = mo   ? weight_decay_momentum_spectral_radius(g, lr, batch, s, *mo, wd.value_or(0.0), so)
                  : wd ? weight_decay_spectral_radius(g, lr, batch, s, *wd, so)
                       : spectral_radius(g, lr, batch, s, so);
        }
        out.j = cli::with_options(mo ? cli::momentum_radius_json(g, out.r, *mo, wd.value_or(0.0)) : cli::radius_json(g, out.r), so);
        out.j["weight_decay"] = wd.value_or(0.0);
        return out;
      },
      py::arg("geometry"), py::arg("lr"), py::arg("batch"), py::arg("sampling") = "without");

  m.def(
      "curve",
      [](const Geometry& g, std::optional<std::vector<Index>> batches, const std::string& sampling, py::kwargs kw) {
        const Sampling s = parse<Sampling>(sampling);
        const std::optional<double> wd = weight_decay_of(kw);
        SolverOptions so = solver_options(kw, "curve");
        so.want_direction = false;
        const std::vector<Index> b = batches ? *batches : default_batches(g.samples());
        std::vector<ThresholdResult> curve;
        {
          Compute c;
          curve = wd ? weight_decay_threshold_curve(g, b, s, *wd, so) : threshold_curve(g, b, s, so);
        }
        PyCurve out;
        out.j = cli::with_options(cli::curve_json(g, curve, wd.value_or(0.0)), so);
        for (const ThresholdResult& r : curve) {
          out.points.push_back({r, cli::threshold_json(g, r)});
          out.points.back().j["weight_decay"] = wd.value_or(0.0);
          out.points.back().j["eta_gd"] = 2.0 / (g.lambda_max() + wd.value_or(0.0));
        }
        return out;
      },
      py::arg("geometry"), py::arg("batches") = py::none(), py::arg("sampling") = "without");
}

// region.

using PyMarks = std::optional<std::vector<std::pair<double, Index>>>;

// A region report computed by `compute(marks, plot)` with the GIL released, timed, as a PyRegion;
// `finish` edits its JSON (e.g. Adam's fields).
template <class Compute_, class Finish>
PyRegion region_of(const PyMarks& marks, const std::optional<std::string>& plot, const Compute_& compute,
                   const Finish& finish) {
  std::vector<cli::Mark> mk;
  if (marks)
    for (const auto& [lr, batch] : *marks) mk.push_back({lr, batch});
  const auto t0 = std::chrono::steady_clock::now();
  cli::RegionReport rep;
  {
    Compute c;
    rep = compute(mk, plot ? *plot : std::string());
  }
  rep.j["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  finish(rep.j);
  PyRegion out;
  out.region = std::move(rep.region);
  out.j = std::move(rep.j);
  out.status = rep.status;
  return out;
}

void bind_region(py::module_& m) {
  m.def(
      "region",
      [](const Geometry& g, const py::object& sampling, std::optional<std::vector<Index>> batches,
         PyMarks marks, std::optional<std::string> plot, py::kwargs kw) {
        const Momentum mo = momentum_of(kw).value_or(Momentum{});
        const double wd = weight_decay_of(kw).value_or(0.0);
        // With weight decay the default schemes of plain SGD are without and with replacement (as on the command line).
        const std::vector<Sampling> schemes =
            wd > 0.0 && sampling.is_none() && mo.beta == 0.0
                ? std::vector<Sampling>{Sampling::without_replacement, Sampling::with_replacement}
                : schemes_of(sampling);
        const SolverOptions so = solver_options(kw, "region");
        const std::vector<Index> b = batches ? *batches : default_batches(g.samples());
        return region_of(
            marks, plot,
            [&](const std::vector<cli::Mark>& mk, const std::string& path) {
              return cli::region_report(g, schemes, b, mk, path, so, mo, wd);
            },
            [](cli::json&) {});
      },
      py::arg("geometry"), py::arg("sampling") = py::none(), py::arg("batches") = py::none(),
      py::arg("marks") = py::none(), py::arg("plot") = py::none());
  m.def(
      "adam_region",
      [](const Geometry& g, const py::object& sampling, std::optional<std::vector<Index>> batches,
         PyMarks marks, std::optional<std::string> plot, double beta1, double weight_decay, py::kwargs kw) {
        const SolverOptions so = solver_options(kw, "adam_region");
        const std::vector<Index> b = batches ? *batches : default_batches(g.samples());
        const std::vector<Sampling> schemes = schemes_of(sampling);  // with the GIL held
        return region_of(
            marks, plot,
            [&](const std::vector<cli::Mark>& mk, const std::string& path) {
              return cli::adam_region_report(g, schemes, b, mk, path, so, beta1, weight_decay);
            },
            [&](cli::json& j) { adam_json(j, beta1, weight_decay); });
      },
      py::arg("geometry"), py::arg("sampling"), py::arg("batches"), py::arg("marks"), py::arg("plot"),
      py::arg("beta1"), py::arg("weight_decay"));
  m.def(
      "adam_l2_region",
      [](py::handle jacobian, Index outputs, py::handle preconditioner, const py::object& sampling,
         std::optional<std::vector<Index>> batches, PyMarks marks, std::optional<std::string> plot, double beta1,
         double weight_decay, py::kwargs kw) {
        // Adam's or RMSProp's own L2 decay (theory/adaptive.md, section 6), from the Jacobian and P.
        const SolverOptions so = solver_options(kw, "adam_l2_region");
        const std::vector<Sampling> schemes = schemes_of(sampling);  // with the GIL held
        MatrixXd j = as_matrix(jacobian, "jacobian").dense();
        Eigen::VectorXd pre = as_vector(preconditioner, "preconditioner");
        return region_of(
            marks, plot,
            [&](const std::vector<cli::Mark>& mk, const std::string& path) {
              Geometry g = Geometry::from_jacobian(precondition_jacobian(j, pre), outputs);
              const std::vector<Index> b = batches ? *batches : default_batches(g.samples());
              const cli::AdaptiveL2Input in{std::move(j), std::move(pre), outputs, ReductionOptions{}, std::move(g)};
              return cli::adam_l2_region_report(in, schemes, b, mk, path, so, beta1, weight_decay);
            },
            [&](cli::json& out) { adam_l2_json(out, beta1, weight_decay); });
      },
      py::arg("jacobian"), py::arg("outputs"), py::arg("preconditioner"), py::arg("sampling"), py::arg("batches"),
      py::arg("marks"), py::arg("plot"), py::arg("beta1"), py::arg("weight_decay"));
}

// bounds and the alignments.
void bind_analysis(py::module_& m) {
  m.def(
      "bounds",
      [](const Geometry& g, Index batch, const std::string& sampling, py::kwargs kw) {
        const Sampling s = parse<Sampling>(sampling);
        SolverOptions so = solver_options(kw, "bounds");
        so.want_direction = false;
        PyBounds out;
        {
          Compute c;
          out.b = stability_bounds(g, batch, s, so);
        }
        out.j = cli::with_options(cli::bounds_report_json(g, out.b), so);
        return out;
      },
      py::arg("geometry"), py::arg("batch"), py::arg("sampling") = "without");

  m.def(
      "hessian_measures",
      [](py::handle gram, Index outputs, py::kwargs kw) {
        const MatrixArg k = as_matrix(gram, "gram");
        const SolverOptions so = solver_options(kw, "hessian_measures");
        Compute c;
        if (k.row_major)  // the transpose of a symmetric matrix is itself; an asymmetric one is refused either way
          return hessian_measures(Eigen::Map<const MatrixXd, 0, Eigen::OuterStride<>>(
                                      k.data, k.cols, k.rows, Eigen::OuterStride<>(k.outer_stride)),
                                  outputs, so);
        return hessian_measures(k.col(), outputs, so);
      },
      py::arg("gram"), py::arg("outputs"));

  m.def(
      "alignment",
      [](py::handle gram, Index outputs, py::handle residuals) {
        const MatrixArg k = as_matrix(gram, "gram");
        const VectorXd r = as_vector(residuals, "residuals");
        Compute c;
        if (k.row_major)
          return alignment(Eigen::Map<const MatrixXd, 0, Eigen::OuterStride<>>(k.data, k.cols, k.rows,
                                                                               Eigen::OuterStride<>(k.outer_stride)),
                           outputs, r);
        return alignment(k.col(), outputs, r);
      },
      py::arg("gram"), py::arg("outputs"), py::arg("residuals"));

  m.def(
      "alignment_from_jacobian",
      [](py::handle jacobian, Index outputs, py::handle residuals) {
        const MatrixArg a = as_matrix(jacobian, "jacobian");
        const VectorXd r = as_vector(residuals, "residuals");
        if (a.row_major) {
          const MatrixXd j = a.dense();
          Compute c;
          return alignment_from_jacobian(j, outputs, r);
        }
        Compute c;
        return alignment_from_jacobian(a.col(), outputs, r);
      },
      py::arg("jacobian"), py::arg("outputs"), py::arg("residuals"));

  m.def(
      "worst_case_alignment",
      [](const Geometry& g) {
        Compute c;
        return worst_case_alignment(g);
      },
      py::arg("geometry"));

}

// montecarlo: the cross-check of the exact answers against Monte Carlo SGD.
void bind_montecarlo(py::module_& m) {
  m.def(
      "montecarlo",
      [](const Geometry& g, double lr, Index batch, const std::string& sampling, std::optional<double> momentum,
         bool nesterov, std::optional<double> weight_decay, const py::kwargs& kw) {
        // The run's sizes, seed and levels: CrossCheckOptions' table (lib/simulation/cross_check_options.cpp).
        CrossCheckOptions o = options_from_keywords<CrossCheckOptions>(kw, "montecarlo", "Monte Carlo options");
        if (!momentum && nesterov) throw sgdstab::invalid_argument("nesterov=True needs momentum=BETA");
        if (momentum) o.momentum = Momentum{*momentum, nesterov};
        o.weight_decay = weight_decay.value_or(0.0);
        o.schedule = parse<Schedule>(sampling);
        o.lr = lr;
        o.batch = batch;
        PyCrossCheck out;
        {
          Compute c;
          out.rep = cross_check(g, o);
        }
        out.j = cli::cross_check_json(o, out.rep);
        return out;
      },
      py::arg("geometry"), py::arg("lr"), py::arg("batch"), py::arg("sampling") = "without", py::kw_only(),
      py::arg("momentum") = py::none(), py::arg("nesterov") = false, py::arg("weight_decay") = py::none());
  m.def(
      "adam_l2_montecarlo",
      [](py::handle jacobian, Index outputs, py::handle preconditioner, double lr, Index batch,
         const std::string& sampling, double beta1, double weight_decay, const py::kwargs& kw) {
        // Adam's or RMSProp's own L2 decay on the whole 2p state (theory/adaptive.md, section 6).
        CrossCheckOptions o = options_from_keywords<CrossCheckOptions>(kw, "adam_l2_montecarlo", "Monte Carlo options");
        o.weight_decay = weight_decay;
        o.schedule = parse<Schedule>(sampling);
        o.lr = lr;
        o.batch = batch;
        const MatrixXd j = as_matrix(jacobian, "jacobian").dense();
        const Eigen::VectorXd pre = as_vector(preconditioner, "preconditioner");
        PyCrossCheck out;
        {
          Compute c;
          out.rep = adam_l2_cross_check(j, outputs, pre, beta1, o);
        }
        out.j = cli::adam_l2_cross_check_json(o, out.rep, beta1);
        adam_l2_json(out.j, beta1, weight_decay);
        return out;
      },
      py::arg("jacobian"), py::arg("outputs"), py::arg("preconditioner"), py::arg("lr"), py::arg("batch"),
      py::arg("sampling"), py::arg("beta1"), py::arg("weight_decay"));
}

// read_matrix, default_batches, the options table and test hooks.
void bind_io_and_options(py::module_& m) {
  m.def(
      "read_matrix",
      [](const std::string& path) {
        MatrixXd a;
        {
          Compute c;
          a = read_matrix(path);
        }
        return to_numpy(a);
      },
      py::arg("path"));

  m.def("default_batches", &default_batches, py::arg("samples"));

  m.def(
      "exact_region_min_bytes",
      [](const Geometry& g, const py::kwargs& kw) {
        return exact_region_min_bytes(g, solver_options(kw, "exact_region_min_bytes"));
      },
      py::arg("geometry"));
  m.def(
      "_exact_region_min_bytes_for_sizes",
      [](Index rows, Index rank, const py::kwargs& kw) {
        return exact_region_min_bytes(rows, rank, solver_options(kw, "exact_region_min_bytes"));
      },
      py::arg("rows"), py::arg("rank"));

  // What the C++ budget checks compare with (sgdstab/memory.hpp): MemAvailable,
  // the memory cgroup's room and RLIMIT_AS's; None when none can be read.
  m.def("available_memory_bytes", []() -> py::object {
    const std::size_t b = available_memory_bytes();
    return b == 0 ? py::object(py::none()) : py::object(py::int_(b));
  });

  // The address space kept for OpenBLAS under ulimit -v (lib/foundations/memory_detail.hpp), for tests.
  m.def("_blas_reserve_bytes", &sgdstab::detail::blas_reserve_bytes);

  // The machine a timing was measured on (sgdstab/machine.hpp): the same
  // record as the command line's "performance" block.
  m.def("machine_info", [] { return json_to_python(cli::performance_json()); });

  // The tables of SolverOptions (lib/foundations/options.cpp) and
  // ReductionOptions (lib/geometry/reduction_options.cpp), for the docstrings
  // and sgdstab.solver_options() / reduction_options().
  m.def("_solver_option_table", [] { return option_rows<SolverOptions>(); });
  m.def("_reduction_option_table", [] { return option_rows<ReductionOptions>(); });
  m.def("_montecarlo_option_table", [] { return option_rows<CrossCheckOptions>(); });
  m.def("_band_option_table", [] { return option_rows<BandOptions>(); });

  // For the tests: where the library reads a matrix argument from, and
  // whether it had to be copied (float32, strided input).
  m.def("_matrix_view", [](py::handle a) {
    const MatrixArg m = as_matrix(a, "array");
    return py::make_tuple(reinterpret_cast<std::uintptr_t>(m.data), m.row_major ? "row" : "column", m.copied);
  });
}

// ---------------------------------------------------------------- matrix-free models

// A LinearizedModel implemented in Python (sgdstab.torch.TorchModel, or any
// subclass): each product calls the Python method with the GIL held; its
// result is read like any matrix argument (float64/float32, 2-D).
class PyLinearizedModel : public LinearizedModel {
 public:
  Index samples() const override { return size_of("samples"); }
  Index outputs() const override { return size_of("outputs"); }
  Index params() const override { return size_of("params"); }
  MatrixXd jacobian_times(const MatrixXd& v) const override { return call("jacobian_times", &v); }
  MatrixXd jacobian_transpose_times(const MatrixXd& u) const override { return call("jacobian_transpose_times", &u); }
  MatrixXd sample_grams() const override {
    {
      py::gil_scoped_acquire gil;
      if (!py::get_override(static_cast<const LinearizedModel*>(this), "sample_grams"))
        return LinearizedModel::sample_grams();  // not overridden: probing
    }
    return call("sample_grams", nullptr);
  }

 private:
  py::function method(const char* name) const {
    py::function f = py::get_override(static_cast<const LinearizedModel*>(this), name);
    if (!f) throw py::type_error(std::string("LinearizedModel subclass: method ") + name + "() is not implemented");
    return f;
  }
  Index size_of(const char* name) const {
    py::gil_scoped_acquire gil;
    return method(name)().cast<Index>();
  }
  MatrixXd call(const char* name, const MatrixXd* arg) const {
    py::gil_scoped_acquire gil;
    py::function f = method(name);
    const py::object out = arg ? f(to_numpy(*arg)) : f();
    return as_matrix(out, std::string(name) + "() result").dense();
  }
};

void bind_models(py::module_& m) {
  py::class_<LinearizedModel, PyLinearizedModel>(m, "LinearizedModel")
      .def(py::init<>())
      .def("samples", &LinearizedModel::samples)
      .def("outputs", &LinearizedModel::outputs)
      .def("params", &LinearizedModel::params)
      .def("jacobian_times", [](const LinearizedModel& lm, py::handle v) { return to_numpy(MatrixXd(lm.jacobian_times(as_matrix(v, "v").dense()))); })
      .def("jacobian_transpose_times",
           [](const LinearizedModel& lm, py::handle u) { return to_numpy(MatrixXd(lm.jacobian_transpose_times(as_matrix(u, "u").dense()))); })
      .def("sample_grams", [](const LinearizedModel& lm) { return to_numpy(MatrixXd(lm.sample_grams())); })
      .def("hessian_times", [](const LinearizedModel& lm, py::handle v) { return to_numpy(MatrixXd(lm.hessian_times(as_matrix(v, "v").dense()))); })
      .def_readwrite("probe_chunk", &LinearizedModel::probe_chunk);
  py::class_<JacobianModel, LinearizedModel>(m, "JacobianModel")
      .def(py::init([](py::handle j, Index outputs) { return JacobianModel(as_matrix(j, "jacobian").dense(), outputs); }),
           py::arg("jacobian"), py::arg("outputs") = 1)
      .def_static("from_geometry", &JacobianModel::from_geometry, py::arg("geometry"));
}

// band and bands, on a Geometry or a LinearizedModel, and their result.
void bind_band_result(py::module_& m) {
  py::class_<PyBand> band(m, "BandResult");
  def_report(band, [](const PyBand& b) -> const Result& { return b.r; });
  band.def_property_readonly("eta_low", [](const PyBand& b) { return b.r.eta_low; })
      .def_property_readonly("eta_high", [](const PyBand& b) { return b.r.eta_high; })
      .def_property_readonly("relative_width", [](const PyBand& b) { return b.r.relative_width; })
      .def_property_readonly("eta_low_kind", [](const PyBand& b) { return b.r.eta_low_kind; })
      .def_property_readonly("delta", [](const PyBand& b) { return b.r.delta; })
      .def_property_readonly("eta_low_certified", [](const PyBand& b) { return b.r.eta_low_certified; })
      .def_property_readonly("batch", [](const PyBand& b) { return b.r.batch; })
      .def_property_readonly("sampling", [](const PyBand& b) { return to_string(b.r.sampling); })
      .def_property_readonly("trial_dimension", [](const PyBand& b) { return b.r.trial_dimension; })
      .def_property_readonly("subspace_dimension", [](const PyBand& b) { return b.r.subspace_dimension; })
      .def_property_readonly("subspace_doublings", [](const PyBand& b) { return b.r.subspace_doublings; })
      .def_property_readonly("products", [](const PyBand& b) { return b.r.products; })
      .def_property_readonly("low_witness", [](const PyBand& b) { return b.r.low_witness; })
      .def("to_dict", [](const PyBand& b) { return json_to_python(b.j); })
      .def("__repr__", [](const PyBand& b) {
        return "<sgdstab.BandResult " + py::repr(py::float_(b.r.eta_low)).cast<std::string>() + " <= eta* <= " +
               py::repr(py::float_(b.r.eta_high)).cast<std::string>() + " batch=" + std::to_string(b.r.batch) +
               " sampling=" + to_string(b.r.sampling) + " eta_low_kind=" + b.r.eta_low_kind + ">";
      });
}

void bind_band(py::module_& m) {
  bind_band_result(m);

  m.def(
      "band",
      [](py::object input, Index batch, const std::string& sampling, py::kwargs kw) {
        const Sampling s = parse<Sampling>(sampling);
        const BandOptions o = options_from_keywords<BandOptions>(kw, "band", "band options");
        PyBand out;
        auto run = [&](const auto& from) {  // a Geometry or a LinearizedModel
          {
            Compute c;
            out.r = stability_band(from, batch, s, o);
          }
          out.j = cli::with_options(cli::band_json(from, out.r), o);
        };
        if (py::isinstance<Geometry>(input))
          run(input.cast<const Geometry&>());
        else if (py::isinstance<LinearizedModel>(input))
          run(input.cast<const LinearizedModel&>());
        else
          throw py::type_error("band: input must be a sgdstab.Geometry or a sgdstab.LinearizedModel, got " +
                               py::str(py::type::handle_of(input)).cast<std::string>());
        return out;
      },
      py::arg("input"), py::arg("batch"), py::arg("sampling") = "without");

  m.def(
      "bands",
      [](const LinearizedModel& lm, std::optional<std::vector<Index>> batches, const std::string& sampling, py::kwargs kw) {
        const Sampling s = parse<Sampling>(sampling);
        const BandOptions o = options_from_keywords<BandOptions>(kw, "bands", "band options");
        const std::vector<Index> b = batches ? *batches : default_batches(lm.samples());
        std::vector<BandResult> rs;
        {
          Compute c;
          rs = stability_bands(lm, b, s, o);
        }
        std::vector<PyBand> out;
        for (BandResult& r : rs) out.push_back({r, cli::with_options(cli::band_json(lm, r), o)});
        return out;
      },
      py::arg("model"), py::arg("batches") = py::none(), py::arg("sampling") = "without");

  m.def(
      "band_region",
      [](const LinearizedModel& lm, const py::object& sampling, std::optional<std::vector<Index>> batches,
         py::kwargs kw) {
        const std::vector<Sampling> schemes = schemes_of(sampling);  // with the GIL held
        const BandOptions o = options_from_keywords<BandOptions>(kw, "band_region", "band options");
        const std::vector<Index> b = batches ? *batches : default_batches(lm.samples());
        std::vector<std::vector<BandResult>> rs;
        {
          Compute c;
          rs = stability_band_region(lm, schemes, b, o);
        }
        std::vector<std::vector<PyBand>> out;
        for (std::vector<BandResult>& row : rs) {
          out.emplace_back();
          for (BandResult& r : row) out.back().push_back({r, cli::with_options(cli::band_json(lm, r), o)});
        }
        return out;
      },
      py::arg("model"), py::arg("sampling") = py::none(), py::arg("batches") = py::none());
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  bind_errors(m);
  bind_geometry(m);
  bind_threshold_results(m);
  bind_region_results(m);
  bind_analysis_results(m);
  bind_momentum(m);
  bind_adaptive(m);
  bind_covariance(m);
  bind_solvers(m);
  bind_region(m);
  bind_analysis(m);
  bind_models(m);
  bind_band(m);
  bind_montecarlo(m);
  bind_io_and_options(m);
}
