#pragma once
/// \file matrix_io.hpp
/// \brief Reading and writing dense matrices: CSV and NumPy .npy.
///
/// CSV: comma-separated numbers, one row per line, no header, every row the
/// same length; blank lines at the end are ignored. NPY: format versions
/// 1-3, 2-D, dtype float64 or float32 (either byte order), C or Fortran
/// order. Every malformed file (empty, ragged, non-numeric, NaN/Inf,
/// truncated, wrong magic, wrong dtype or rank, trailing bytes) throws
/// sgdstab::io_error naming the file and the problem. Writers go through a
/// temporary file renamed into place, so no result file is ever half-written.
#include <Eigen/Core>
#include <string>
#include <utility>

namespace sgdstab {

/// Reads `path` as .npy when its name ends in ".npy", otherwise as CSV.
Eigen::MatrixXd read_matrix(const std::string& path);
Eigen::MatrixXd read_csv(const std::string& path);
Eigen::MatrixXd read_npy(const std::string& path);
/// The shape (rows, cols) of a .npy matrix, from its header alone (the
/// header and the file's size are checked as read_npy checks them).
std::pair<long long, long long> npy_shape(const std::string& path);
/// Rows [first, first + count) of a .npy matrix, reading only their bytes
/// (what each rank of sgdstab-mpi reads of its input): the same checks as
/// read_npy on the header, the file size and the elements read.
/// \throws sgdstab::io_error naming the file and the problem, also when the
///   rows are outside the matrix.
Eigen::MatrixXd read_npy_rows(const std::string& path, long long first, long long count);

/// Writes .npy when `path` ends in ".npy", otherwise CSV (the mirror of read_matrix).
void write_matrix(const std::string& path, const Eigen::MatrixXd& m);
/// Writes with full (17 significant digits) precision.
void write_csv(const std::string& path, const Eigen::MatrixXd& m);
/// Writes float64, C order, format version 1.0.
void write_npy(const std::string& path, const Eigen::MatrixXd& m);
/// Writes `text` as it is (CSV with a header, SVG, JSON), through the same
/// temporary file + rename. \throws sgdstab::io_error naming the path.
void write_text(const std::string& path, const std::string& text);

}  // namespace sgdstab
