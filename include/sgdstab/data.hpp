#pragma once
/// \file data.hpp
/// \brief Data sets: synthetic generators, table files, and the image sets
/// Fashion-MNIST (IDX files) and CIFAR-10 (binary batches), with class
/// selection, one-hot targets and pixel scaling (theory/data.md).
///
/// Conventions (the library's only ones; theory/data.md §1):
/// - A Dataset holds n samples, one per row: inputs (n x d), targets (n x c).
///   The loss is the library's l_i = 1/2 |f(x_i) - y_i|^2, L = (1/n) sum_i l_i;
///   targets are used exactly as given (no rescaling, no centring).
/// - Sample order is deterministic: generators produce samples in draw order;
///   select_classes returns class-major blocks in the order of
///   Selection::classes, each block in file order.
/// - One-hot targets are over the *selected* classes: column j is 1 for
///   samples of classes[j] and 0 otherwise (c = classes.size()). `labels`
///   keeps the original class numbers.
/// - All randomness comes from sgdstab::Rng (SplitMix64, Box-Muller), so a
///   seed gives the same data on every platform (theory/data.md §2).
///
/// Where the image data comes from:
/// - Fashion-MNIST: the Debian package `dataset-fashion-mnist` installs the
///   four gzip-compressed IDX files; find_fashion_mnist_directory() locates
///   them with `dpkg-query -L dataset-fashion-mnist`, or takes the directory
///   named by the environment variable SGDSTAB_FASHION_MNIST_DIR.
/// - CIFAR-10 is not packaged: download
///   https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz, extract it and
///   pass the `cifar-10-batches-bin` directory to read_cifar10().
///
/// Errors: bad arguments throw sgdstab::invalid_argument; unreadable or
/// malformed files throw sgdstab::io_error naming the file and the problem;
/// data too large for memory throws sgdstab::resource_error before the large
/// allocation.
///
/// \code
/// auto images = sgdstab::read_fashion_mnist(sgdstab::find_fashion_mnist_directory(), /*train=*/true);
/// sgdstab::Selection sel{{0, 1, 2, 3}, 256};     // classes 0..3, first 256 of each
/// sgdstab::Dataset ds = sgdstab::select_classes(images, sel, sgdstab::PixelScaling::unit,
///                                               "fashion-mnist train");
/// // ds.inputs: 1024 x 784 in [0, 1]; ds.targets: 1024 x 4 one-hot
/// \endcode
#include <Eigen/Core>
#include <cstdint>
#include <string>
#include <vector>

#include "sgdstab/types.hpp"

namespace sgdstab {

/// A supervised data set: n samples, inputs n x d, targets n x c.
struct Dataset {
  Eigen::MatrixXd inputs;   ///< n x d, one sample per row
  Eigen::MatrixXd targets;  ///< n x c, used as given by the 1/2-mean-square loss
  std::vector<int> labels;  ///< class label per sample (classification sets); empty otherwise
  std::string description;  ///< e.g. "fashion-mnist train: classes 0,1,2,3 x 256, pixels unit"

  Index samples() const { return inputs.rows(); }     ///< n
  Index input_dim() const { return inputs.cols(); }   ///< d
  Index outputs() const { return targets.cols(); }    ///< c
  /// \throws sgdstab::invalid_argument unless inputs and targets have the same
  ///   number of rows n >= 1, d >= 1, c >= 1, every entry is finite and labels
  ///   is empty or has n entries.
  void validate() const;
};

// ---------------------------------------------------------------------------
// Generators (theory/data.md §3). Deterministic functions of their arguments.

/// n x d matrix of iid N(0, 1) entries, drawn sample by sample (row-major), so
/// the first rows do not depend on n. Requires n >= 1, d >= 1.
Eigen::MatrixXd gaussian_inputs(Index n, Index d, std::uint64_t seed);

/// Rows x = diag(sqrt(s)) z with z ~ N(0, I_d), d = s.size(): covariance
/// diag(s). Uses the same z as gaussian_inputs(n, d, seed). Requires d >= 1
/// and every s_k finite and >= 0.
Eigen::MatrixXd gaussian_inputs(Index n, const Eigen::VectorXd& covariance_spectrum, std::uint64_t seed);

/// s_k = k^(-exponent), k = 1..d. Requires d >= 1 and a finite exponent.
Eigen::VectorXd power_law_spectrum(Index d, double exponent);

/// The 1-D curvature data set: n = a.size() samples, input x_i = sqrt(a_i)
/// (d = 1), target 0 (c = 1). The linear model f = theta x then has the
/// per-sample Hessians h_i = x_i^2 = a_i (theory/data.md §3.3).
/// Requires n >= 1 and every a_i finite and >= 0.
Dataset curvature_dataset(const Eigen::VectorXd& curvatures);

/// n samples x_i uniform on [-1, 1) (draw order, not sorted), d = c = 1, and
/// y_i = g(x_i) with `function` one of "sine" (sin(pi x)), "abs" (|x|),
/// "quadratic" (x^2), "step" (sign x, 0 at 0). Requires n >= 1.
Dataset regression_1d(Index n, const std::string& function, std::uint64_t seed);

/// Splits a table: the first cols - outputs columns are the inputs, the last
/// `outputs` columns the targets. Requires 1 <= outputs < cols, rows >= 1 and
/// finite entries.
Dataset split_columns(const Eigen::MatrixXd& table, Index outputs, const std::string& description);

/// read_matrix(path) (CSV, or .npy by name) then split_columns; the
/// description names the file. \throws sgdstab::io_error for the file,
/// sgdstab::invalid_argument when `outputs` does not fit its column count.
Dataset read_table_dataset(const std::string& path, Index outputs);

// ---------------------------------------------------------------------------
// Raw readers (theory/data.md §4-5). Files may be gzip-compressed or plain.

/// An IDX array: dimensions and the values in row-major (C) order.
struct IdxArray {
  std::vector<std::int64_t> dims;
  std::vector<double> values;
};

/// Reads an IDX file (LeCun's format): two zero bytes, a type code (0x08
/// ubyte, 0x09 sbyte, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64),
/// the number of dimensions (>= 1), the dimensions as big-endian int32, then
/// the data, big-endian, row-major. gzip-compressed or plain.
/// \throws sgdstab::io_error naming the file on: cannot open, truncated
///   header (naming the field), bad magic, unknown type, dimension <= 0, a
///   size that overflows, data shorter than the dimensions imply, trailing
///   bytes, corrupt gzip data, non-finite floating-point values.
/// \throws sgdstab::resource_error when the values would not fit in memory.
IdxArray read_idx(const std::string& path);

/// 8-bit pixels, one image per row.
using PixelMatrix = Eigen::Matrix<std::uint8_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Labelled images. pixels is n x (channels * rows * cols), channels planar:
/// column k * rows * cols + i * cols + j is channel k, row i, column j.
struct LabeledImages {
  PixelMatrix pixels;
  std::vector<int> labels;  ///< n labels as stored in the file
  Index rows = 0, cols = 0, channels = 0;
};

/// Images from an unsigned-byte IDX file of rank 3 (n x rows x cols) and
/// labels from an unsigned-byte IDX file of rank 1 (n); channels = 1. The
/// counts must agree. Label values are not range-checked here (select_classes
/// and read_fashion_mnist do that). \throws sgdstab::io_error.
LabeledImages read_idx_images(const std::string& images_path, const std::string& labels_path);

/// One CIFAR-10 binary batch: records of 1 label byte then 3072 pixel bytes
/// (1024 red, 1024 green, 1024 blue, each 32 x 32 row-major). The file size
/// must be a positive multiple of 3073 and every label in 0..9.
/// \throws sgdstab::io_error naming the file (and the record for a bad label).
LabeledImages read_cifar10_batch(const std::string& path);

/// The CIFAR-10 training set (data_batch_1.bin .. data_batch_5.bin, in that
/// order) or test set (test_batch.bin) from `directory`, the extracted
/// cifar-10-batches-bin directory of
/// https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz.
/// \throws sgdstab::io_error naming a missing file and where to get the data.
LabeledImages read_cifar10(const std::string& directory, bool train);

/// Fashion-MNIST from `directory`: {train,t10k}-images-idx3-ubyte and
/// {train,t10k}-labels-idx1-ubyte, each plain or with ".gz" (plain is tried
/// first). Labels must be in 0..9. \throws sgdstab::io_error.
LabeledImages read_fashion_mnist(const std::string& directory, bool train);

/// The directory holding train-images-idx3-ubyte(.gz): the value of the
/// environment variable SGDSTAB_FASHION_MNIST_DIR when it is set (it must hold
/// the file), otherwise the directory the Debian package dataset-fashion-mnist
/// installed it in (found with `dpkg-query -L dataset-fashion-mnist`).
/// \throws sgdstab::io_error "Fashion-MNIST not found: install the Debian
///   package dataset-fashion-mnist or set SGDSTAB_FASHION_MNIST_DIR".
std::string find_fashion_mnist_directory();

// ---------------------------------------------------------------------------
// Selection and preprocessing (theory/data.md §6).

// PixelScaling (types.hpp): how pixel bytes p in 0..255 become inputs. Means
// and standard deviations are per feature (pixel position) over the *selected*
// samples.

/// Which samples select_classes takes.
struct Selection {
  std::vector<int> classes;  ///< in output order; empty = every class present, ascending
  Index per_class = 0;       ///< first per_class samples of each class in file order; 0 = all
};

/// The selected samples as a Dataset: for each classes[j] in order, the
/// first per_class samples of that class in file order (class-major blocks).
/// inputs = scaled pixels, targets = one_hot(labels, classes), labels = the
/// original class numbers, description = `description` + ": classes 0,1,2 x
/// 256, pixels unit" (x all when per_class = 0).
/// \throws sgdstab::invalid_argument on num_classes < 1, per_class < 0, a
///   class outside [0, num_classes), a duplicate class, a class with fewer
///   than per_class samples (or none), a label outside [0, num_classes), or
///   labels/pixels of different lengths.
Dataset select_classes(const LabeledImages& images, const Selection& selection, PixelScaling scaling,
                       const std::string& description, int num_classes = 10);

/// n x classes.size() matrix with entry (i, j) = 1 if labels[i] == classes[j].
/// \throws sgdstab::invalid_argument when classes is empty or has duplicates,
///   or a label is not among the classes.
Eigen::MatrixXd one_hot(const std::vector<int>& labels, const std::vector<int>& classes);

}  // namespace sgdstab
