// Data sets: IDX and CIFAR-10 readers on hand-made byte files (every type,
// gzip and plain, every truncation, every corruption), class selection and
// scaling against hand computation, the generators, and -- when the Debian
// package dataset-fashion-mnist is installed -- the real Fashion-MNIST files.
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "sgdstab/data.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/random.hpp"
#include "temp_files.hpp"

using Eigen::MatrixXd;
using Eigen::VectorXd;
using sgdstab::Index;

namespace {

using testing_files::read_bytes;
using testing_files::write_bytes;

// Scratch directory named after this suite.
class DataTempDir : public testing_files::TempDir {
 public:
  DataTempDir() : testing_files::TempDir("sgdstab_data") {}
};

void write_gz(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb9");
  ASSERT_NE(f, nullptr) << path;
  if (!bytes.empty()) {
    ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  }
  ASSERT_EQ(gzclose(f), Z_OK);
}

// The message of the io_error `f` throws, or a marker when it throws none.
std::string data_error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const sgdstab::io_error& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("(wrong exception: ") + e.what() + ")";
  }
  return "(no io_error)";
}

std::string data_invalid_argument_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const sgdstab::invalid_argument& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("(wrong exception: ") + e.what() + ")";
  }
  return "(no invalid_argument)";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// ---- IDX files built byte by byte (independent of the reader) -------------

std::string be32(std::uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>((v >> 16) & 0xff), static_cast<char>((v >> 8) & 0xff),
          static_cast<char>(v & 0xff)};
}

std::string idx_header(unsigned type, const std::vector<std::uint32_t>& dims) {
  std::string s{'\0', '\0', static_cast<char>(type), static_cast<char>(dims.size())};
  for (std::uint32_t d : dims) s += be32(d);
  return s;
}

// Big-endian encoding of `values` as IDX type `type`.
std::string idx_data(unsigned type, const std::vector<double>& values) {
  std::string s;
  for (double v : values) {
    std::uint64_t bits = 0;
    std::size_t size = 0;
    switch (type) {
      case 0x08: bits = static_cast<std::uint8_t>(v); size = 1; break;
      case 0x09: bits = static_cast<std::uint8_t>(static_cast<std::int8_t>(v)); size = 1; break;
      case 0x0B: bits = static_cast<std::uint16_t>(static_cast<std::int16_t>(v)); size = 2; break;
      case 0x0C: bits = static_cast<std::uint32_t>(static_cast<std::int32_t>(v)); size = 4; break;
      case 0x0D: {
        const float f = static_cast<float>(v);
        std::uint32_t u;
        std::memcpy(&u, &f, 4);
        bits = u;
        size = 4;
        break;
      }
      default: std::memcpy(&bits, &v, 8); size = 8;
    }
    for (std::size_t k = size; k-- > 0;) s += static_cast<char>((bits >> (8 * k)) & 0xff);
  }
  return s;
}

struct TypeCase {
  unsigned code;
  std::vector<double> values;  // exactly representable in the type
};

const std::vector<TypeCase>& type_cases() {
  static const std::vector<TypeCase> cases = {
      {0x08, {0, 1, 127, 128, 200, 255}},
      {0x09, {-128, -1, 0, 1, 100, 127}},
      {0x0B, {-32768, -300, -1, 0, 258, 32767}},
      {0x0C, {-2147483648.0, -70000, -1, 0, 65536 + 3, 2147483647.0}},
      {0x0D, {-1.5, 0.0, 0.15625, 3.0e20, -2.5e-20, 1048577.0}},
      {0x0E, {-1.0 / 3.0, 0.0, 1e300, -4.9e-324, 3.141592653589793, 123456789.123456789}},
  };
  return cases;
}

// ---------------------------------------------------------------------------

TEST(DataIdx, RoundTripsEveryTypeGzipAndPlain) {
  DataTempDir d;
  const std::vector<std::vector<std::uint32_t>> shapes = {{6}, {2, 3}, {3, 1, 2}};
  for (const TypeCase& t : type_cases())
    for (const auto& shape : shapes) {
      const std::string bytes = idx_header(t.code, shape) + idx_data(t.code, t.values);
      write_bytes(d.file("a.idx"), bytes);
      write_gz(d.file("a.idx.gz"), bytes);
      for (const char* name : {"a.idx", "a.idx.gz"}) {
        SCOPED_TRACE("type " + std::to_string(t.code) + ", rank " + std::to_string(shape.size()) + ", " + name);
        const sgdstab::IdxArray a = sgdstab::read_idx(d.file(name));
        ASSERT_EQ(a.dims.size(), shape.size());
        for (std::size_t k = 0; k < shape.size(); ++k) EXPECT_EQ(a.dims[k], static_cast<std::int64_t>(shape[k]));
        ASSERT_EQ(a.values.size(), t.values.size());
        for (std::size_t k = 0; k < t.values.size(); ++k) {
          const double expect = t.code == 0x0D ? static_cast<double>(static_cast<float>(t.values[k])) : t.values[k];
          EXPECT_EQ(a.values[k], expect) << "element " << k;
        }
      }
    }
  // The gzip file really is compressed (the reader is not just reading it plain).
  EXPECT_EQ(static_cast<unsigned char>(read_bytes(d.file("a.idx.gz"))[0]), 0x1f);
}

TEST(DataIdx, TruncationAtEveryOffsetThrowsAndNamesTheField) {
  DataTempDir d;
  // int16, 3 x 2 x 2: 4 + 12 header bytes, 24 data bytes.
  std::vector<double> values;
  for (int k = 0; k < 12; ++k) values.push_back(k * 1000 - 5000);
  const std::string full = idx_header(0x0B, {3, 2, 2}) + idx_data(0x0B, values);
  ASSERT_EQ(full.size(), 40u);
  write_bytes(d.file("full.idx"), full);
  EXPECT_EQ(sgdstab::read_idx(d.file("full.idx")).values, values);
  for (std::size_t len = 0; len < full.size(); ++len) {
    SCOPED_TRACE("first " + std::to_string(len) + " bytes");
    const std::string cut = full.substr(0, len);
    std::string expect;
    if (len == 0) expect = "the file is empty";
    else if (len < 2) expect = "inside the two zero bytes of the magic number";
    else if (len == 2) expect = "before the type code";
    else if (len == 3) expect = "before the number of dimensions";
    else if (len < 16) expect = "inside dimension " + std::to_string((len - 4) / 4 + 1) + " of 3";
    else expect = "expected 24 bytes of data (3 x 2 x 2 elements of int16), found " + std::to_string(len - 16);
    // plain, and the same bytes gzip-compressed: the IDX error is the same
    write_bytes(d.file("cut.idx"), cut);
    write_gz(d.file("cut.idx.gz"), cut);
    for (const char* name : {"cut.idx", "cut.idx.gz"}) {
      const std::string msg = data_error_of([&] { sgdstab::read_idx(d.file(name)); });
      EXPECT_TRUE(contains(msg, expect)) << name << ": " << msg;
      EXPECT_TRUE(contains(msg, d.file(name))) << msg;
    }
  }
  // A gzip *stream* cut at every byte: always an io_error, never a crash.
  write_gz(d.file("full.idx.gz"), full);
  const std::string gz = read_bytes(d.file("full.idx.gz"));
  for (std::size_t len = 0; len < gz.size(); ++len) {
    write_bytes(d.file("cutgz.gz"), gz.substr(0, len));
    const std::string msg = data_error_of([&] { sgdstab::read_idx(d.file("cutgz.gz")); });
    EXPECT_TRUE(contains(msg, d.file("cutgz.gz"))) << "gzip cut at " << len << ": " << msg;
  }
}

TEST(DataIdx, CorruptFilesAreRejected) {
  DataTempDir d;
  const std::string data6 = idx_data(0x08, {1, 2, 3, 4, 5, 6});
  const std::vector<std::pair<std::string, std::string>> cases = {
      {std::string("\x01\x00\x08\x01", 4) + be32(6) + data6, "bad magic number: byte 1 is 0x01"},
      {std::string("\x00\x07\x08\x01", 4) + be32(6) + data6, "bad magic number: byte 2 is 0x07"},
      {"hello world", "bad magic number"},
      {idx_header(0x0A, {6}) + data6, "unknown type code 0x0A"},
      {idx_header(0x07, {6}) + data6, "unknown type code 0x07"},
      {idx_header(0xFF, {6}) + data6, "unknown type code 0xFF"},
      {idx_header(0x08, {}) + data6, "number of dimensions (byte 4) is 0"},
      {idx_header(0x08, {2, 0}) + data6, "dimension 2 of 2 is 0"},
      {idx_header(0x08, {0x80000000u, 3}) + data6, "dimension 1 of 2 is -2147483648"},
      {idx_header(0x08, {0xFFFFFFFFu}) + data6, "dimension 1 of 1 is -1"},
      {idx_header(0x0E, {0x7FFFFFFFu, 0x7FFFFFFFu, 0x7FFFFFFFu}) + data6, "overflow a 64-bit size"},
      {idx_header(0x08, {0x7FFFFFFFu, 0x7FFFFFFFu, 0x7FFFFFFFu, 4}), "overflow a 64-bit size"},
      {idx_header(0x08, {6}) + data6 + "X", "1 unexpected trailing bytes after the 6 bytes of data"},
      {idx_header(0x08, {2, 3}) + data6 + std::string(100, '\0'), "100 unexpected trailing bytes"},
      {idx_header(0x08, {7}) + data6, "expected 7 bytes of data (7 elements of unsigned byte), found 6"},
      {idx_header(0x0D, {2}) + idx_data(0x0D, {1.0, std::nan("")}), "element 1 is not finite"},
      {idx_header(0x0E, {1}) + idx_data(0x0E, {HUGE_VAL}), "element 0 is not finite"},
  };
  for (const auto& [bytes, expect] : cases) {
    write_bytes(d.file("bad.idx"), bytes);
    write_gz(d.file("bad.idx.gz"), bytes);
    for (const char* name : {"bad.idx", "bad.idx.gz"}) {
      const std::string msg = data_error_of([&] { sgdstab::read_idx(d.file(name)); });
      EXPECT_TRUE(contains(msg, expect)) << name << "\n  expected: " << expect << "\n  got: " << msg;
      EXPECT_TRUE(contains(msg, d.file(name))) << msg;
    }
  }
  EXPECT_TRUE(contains(data_error_of([&] { sgdstab::read_idx(d.file("missing.idx")); }), "cannot open"));
  EXPECT_TRUE(contains(data_error_of([&] { sgdstab::read_idx(d.path()); }), "is a directory"));
}

TEST(DataIdx, HugeDimensionsFailTheMemoryCheckBeforeReading) {
  DataTempDir d;
  // 2^31-1 squared unsigned bytes (~4.6e18): representable, but no machine has that memory.
  write_bytes(d.file("huge.idx"), idx_header(0x08, {0x7FFFFFFFu, 0x7FFFFFFFu}) + "abc");
  EXPECT_THROW(sgdstab::read_idx(d.file("huge.idx")), sgdstab::resource_error);
  write_bytes(d.file("huge3.idx"), idx_header(0x08, {0x7FFFFFFFu, 0x7FFFFFFFu, 1}) + "abc");
  write_bytes(d.file("l.idx"), idx_header(0x08, {0x7FFFFFFFu}));
  EXPECT_THROW(sgdstab::read_idx_images(d.file("huge3.idx"), d.file("l.idx")), sgdstab::resource_error);
}

TEST(DataIdx, CorruptGzipNeverCrashesOrReturnsWrongData) {
  DataTempDir d;
  std::vector<double> values;
  for (int k = 0; k < 60; ++k) values.push_back(static_cast<double>((k * 37) % 251));
  const std::string full = idx_header(0x08, {6, 10}) + idx_data(0x08, values);
  write_gz(d.file("ok.gz"), full);
  const std::string gz = read_bytes(d.file("ok.gz"));
  int errors = 0;
  for (std::size_t pos = 0; pos < gz.size(); ++pos) {
    std::string bad = gz;
    bad[pos] = static_cast<char>(bad[pos] ^ 0x5A);
    write_bytes(d.file("bad.gz"), bad);
    try {
      const sgdstab::IdxArray a = sgdstab::read_idx(d.file("bad.gz"));
      // Only bytes zlib does not check (gzip MTIME, XFL, OS) may change silently.
      EXPECT_EQ(a.values, values) << "byte " << pos << " flipped: wrong data returned";
      EXPECT_TRUE((pos >= 4 && pos <= 9)) << "byte " << pos << " flipped was not detected";
    } catch (const sgdstab::io_error&) {
      ++errors;
    }
  }
  EXPECT_GE(errors, static_cast<int>(gz.size()) - 6);
  // A flipped byte in the CRC-32 of the gzip trailer: zlib reports it, the message names the file.
  std::string bad = gz;
  bad[gz.size() - 6] = static_cast<char>(bad[gz.size() - 6] ^ 0xFF);
  write_bytes(d.file("crc.gz"), bad);
  const std::string msg = data_error_of([&] { sgdstab::read_idx(d.file("crc.gz")); });
  EXPECT_TRUE(contains(msg, d.file("crc.gz") + ": corrupt or truncated gzip data (zlib: incorrect data check)")) << msg;
}

// ---- IDX image/label pairs ---------------------------------------------------

std::string pixel_bytes(int n, int rows, int cols) {
  std::string s;
  for (int i = 0; i < n * rows * cols; ++i) s += static_cast<char>((i * 53 + 7) % 256);
  return s;
}

TEST(DataIdx, ImagesAndLabels) {
  DataTempDir d;
  const std::string px = pixel_bytes(5, 3, 4);
  write_gz(d.file("img.gz"), idx_header(0x08, {5, 3, 4}) + px);
  write_bytes(d.file("lab"), idx_header(0x08, {5}) + std::string("\x03\x00\x09\x03\x01", 5));
  const sgdstab::LabeledImages im = sgdstab::read_idx_images(d.file("img.gz"), d.file("lab"));
  EXPECT_EQ(im.rows, 3);
  EXPECT_EQ(im.cols, 4);
  EXPECT_EQ(im.channels, 1);
  ASSERT_EQ(im.pixels.rows(), 5);
  ASSERT_EQ(im.pixels.cols(), 12);
  for (int i = 0; i < 5; ++i)
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 4; ++c)
        EXPECT_EQ(im.pixels(i, r * 4 + c), static_cast<std::uint8_t>(px[static_cast<std::size_t>(i * 12 + r * 4 + c)]));
  EXPECT_EQ(im.labels, (std::vector<int>{3, 0, 9, 3, 1}));

  // count mismatch, wrong type, wrong rank
  write_bytes(d.file("lab4"), idx_header(0x08, {4}) + std::string(4, '\1'));
  std::string msg = data_error_of([&] { sgdstab::read_idx_images(d.file("img.gz"), d.file("lab4")); });
  EXPECT_TRUE(contains(msg, "holds 5 images") && contains(msg, "holds 4 labels")) << msg;
  write_bytes(d.file("img16"), idx_header(0x0B, {5, 3, 4}) + std::string(120, '\0'));
  msg = data_error_of([&] { sgdstab::read_idx_images(d.file("img16"), d.file("lab")); });
  EXPECT_TRUE(contains(msg, "unsigned bytes") && contains(msg, "0x0B")) << msg;
  write_bytes(d.file("img2d"), idx_header(0x08, {5, 12}) + px);
  msg = data_error_of([&] { sgdstab::read_idx_images(d.file("img2d"), d.file("lab")); });
  EXPECT_TRUE(contains(msg, "must have 3 dimension(s)")) << msg;
  write_bytes(d.file("lab2d"), idx_header(0x08, {5, 1}) + std::string(5, '\1'));
  msg = data_error_of([&] { sgdstab::read_idx_images(d.file("img.gz"), d.file("lab2d")); });
  EXPECT_TRUE(contains(msg, "must have 1 dimension(s)")) << msg;
  // truncated image data is still caught after the header checks
  write_bytes(d.file("imgcut"), idx_header(0x08, {5, 3, 4}) + px.substr(0, 59));
  msg = data_error_of([&] { sgdstab::read_idx_images(d.file("imgcut"), d.file("lab")); });
  EXPECT_TRUE(contains(msg, "expected 60 bytes of data")) << msg;
}

// ---- Fashion-MNIST directory layout -------------------------------------------

class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) {
      had_ = true;
      old_ = old;
    }
    if (value) setenv(name, value, 1);
    else unsetenv(name);
  }
  ~ScopedEnv() {
    if (had_) setenv(name_.c_str(), old_.c_str(), 1);
    else unsetenv(name_.c_str());
  }

 private:
  std::string name_, old_;
  bool had_ = false;
};

void write_fashion(const DataTempDir& d, const std::string& prefix, int n, bool gz, int bad_label = -1) {
  std::string labels;
  for (int i = 0; i < n; ++i) labels += static_cast<char>(i == bad_label ? 10 : i % 10);
  const std::string images = idx_header(0x08, {static_cast<std::uint32_t>(n), 28, 28}) + pixel_bytes(n, 28, 28);
  const std::string lab = idx_header(0x08, {static_cast<std::uint32_t>(n)}) + labels;
  if (gz) {
    write_gz(d.file(prefix + "-images-idx3-ubyte.gz"), images);
    write_gz(d.file(prefix + "-labels-idx1-ubyte.gz"), lab);
  } else {
    write_bytes(d.file(prefix + "-images-idx3-ubyte"), images);
    write_bytes(d.file(prefix + "-labels-idx1-ubyte"), lab);
  }
}

TEST(DataFashion, ReadsPlainOrGzipFilesFromADirectory) {
  DataTempDir d;
  write_fashion(d, "train", 23, /*gz=*/true);
  write_fashion(d, "t10k", 11, /*gz=*/false);
  const auto train = sgdstab::read_fashion_mnist(d.path(), true);
  const auto test = sgdstab::read_fashion_mnist(d.path(), false);
  EXPECT_EQ(train.pixels.rows(), 23);
  EXPECT_EQ(test.pixels.rows(), 11);
  EXPECT_EQ(train.pixels.cols(), 784);
  EXPECT_EQ(train.labels[12], 2);
  EXPECT_EQ(test.pixels(10, 783), static_cast<std::uint8_t>((((10 * 784 + 783) * 53) + 7) % 256));

  DataTempDir bad;
  write_fashion(bad, "train", 12, false, /*bad_label=*/7);
  std::string msg = data_error_of([&] { sgdstab::read_fashion_mnist(bad.path(), true); });
  EXPECT_TRUE(contains(msg, "label 7 is 10") && contains(msg, "train-labels-idx1-ubyte")) << msg;
  msg = data_error_of([&] { sgdstab::read_fashion_mnist(bad.path(), false); });
  EXPECT_TRUE(contains(msg, "t10k-images-idx3-ubyte(.gz): Fashion-MNIST file not found")) << msg;
}

TEST(DataFashion, EnvironmentVariableWins) {
  DataTempDir d;
  write_fashion(d, "train", 3, true);
  {
    ScopedEnv env("SGDSTAB_FASHION_MNIST_DIR", d.path().c_str());
    EXPECT_EQ(sgdstab::find_fashion_mnist_directory(), d.path());
  }
  DataTempDir empty;
  ScopedEnv env("SGDSTAB_FASHION_MNIST_DIR", empty.path().c_str());
  const std::string msg = data_error_of([] { sgdstab::find_fashion_mnist_directory(); });
  EXPECT_TRUE(contains(msg, "Fashion-MNIST not found: install the Debian package dataset-fashion-mnist or set "
                            "SGDSTAB_FASHION_MNIST_DIR"))
      << msg;
  EXPECT_TRUE(contains(msg, empty.path())) << msg;
}

TEST(DataFashion, RealDataFromTheDebianPackage) {
  ScopedEnv env("SGDSTAB_FASHION_MNIST_DIR", nullptr);
  std::string dir;
  try {
    dir = sgdstab::find_fashion_mnist_directory();
  } catch (const sgdstab::io_error& e) {
    GTEST_SKIP() << "dataset-fashion-mnist is not installed: " << e.what();
  }
  const sgdstab::LabeledImages train = sgdstab::read_fashion_mnist(dir, true);
  ASSERT_EQ(train.pixels.rows(), 60000);
  EXPECT_EQ(train.rows, 28);
  EXPECT_EQ(train.cols, 28);
  EXPECT_EQ(train.channels, 1);
  EXPECT_EQ(train.pixels.cols(), 784);
  std::vector<int> count(10, 0);
  for (int l : train.labels) {
    ASSERT_TRUE(l >= 0 && l <= 9) << l;
    ++count[static_cast<std::size_t>(l)];
  }
  for (int k = 0; k < 10; ++k) EXPECT_EQ(count[static_cast<std::size_t>(k)], 6000) << "class " << k;
  // First labels and the pixel sum of image 0, from Python's gzip module.
  EXPECT_EQ(std::vector<int>(train.labels.begin(), train.labels.begin() + 12),
            (std::vector<int>{9, 0, 0, 3, 0, 2, 7, 2, 5, 5, 0, 9}));
  EXPECT_EQ(train.pixels.row(0).cast<long>().sum(), 76247);
  const sgdstab::LabeledImages test = sgdstab::read_fashion_mnist(dir, false);
  EXPECT_EQ(test.pixels.rows(), 10000);
  EXPECT_EQ(std::vector<int>(test.labels.begin(), test.labels.begin() + 8), (std::vector<int>{9, 2, 1, 1, 6, 1, 4, 6}));
  // A selection as the experiments use it.
  const sgdstab::Dataset ds =
      sgdstab::select_classes(train, {{0, 1, 2, 3}, 256}, sgdstab::PixelScaling::unit, "fashion-mnist train");
  EXPECT_EQ(ds.samples(), 1024);
  EXPECT_EQ(ds.input_dim(), 784);
  EXPECT_EQ(ds.outputs(), 4);
  EXPECT_EQ(ds.description, "fashion-mnist train: classes 0,1,2,3 x 256, pixels unit");
  ds.validate();
}

// ---- CIFAR-10 ------------------------------------------------------------------

// Pixel byte of record r, channel ch, row i, column j (distinct per channel).
std::uint8_t cifar_pixel(int r, int ch, int i, int j) { return static_cast<std::uint8_t>((r * 13 + ch * 85 + i * 7 + j) % 256); }

std::string cifar_batch(int records, int label_offset = 0, int bad_record = -1) {
  std::string s;
  for (int r = 0; r < records; ++r) {
    s += static_cast<char>(r == bad_record ? 10 : (r + label_offset) % 10);
    for (int ch = 0; ch < 3; ++ch)
      for (int i = 0; i < 32; ++i)
        for (int j = 0; j < 32; ++j) s += static_cast<char>(cifar_pixel(r + label_offset, ch, i, j));
  }
  return s;
}

TEST(DataCifar, BatchKeepsThePlanarChannelOrder) {
  DataTempDir d;
  write_bytes(d.file("b.bin"), cifar_batch(7));
  const sgdstab::LabeledImages im = sgdstab::read_cifar10_batch(d.file("b.bin"));
  EXPECT_EQ(im.rows, 32);
  EXPECT_EQ(im.cols, 32);
  EXPECT_EQ(im.channels, 3);
  ASSERT_EQ(im.pixels.rows(), 7);
  ASSERT_EQ(im.pixels.cols(), 3072);
  EXPECT_EQ(im.labels, (std::vector<int>{0, 1, 2, 3, 4, 5, 6}));
  for (int r = 0; r < 7; ++r)
    for (int ch = 0; ch < 3; ++ch)
      for (int i = 0; i < 32; ++i)
        for (int j = 0; j < 32; ++j)
          ASSERT_EQ(im.pixels(r, ch * 1024 + i * 32 + j), cifar_pixel(r, ch, i, j))
              << "record " << r << " channel " << ch << " (" << i << ", " << j << ")";
  // and against the raw file bytes: record r occupies bytes r*3073 .. r*3073+3072
  const std::string raw = read_bytes(d.file("b.bin"));
  EXPECT_EQ(im.pixels(3, 0), static_cast<std::uint8_t>(raw[3 * 3073 + 1]));
  EXPECT_EQ(im.pixels(6, 3071), static_cast<std::uint8_t>(raw[7 * 3073 - 1]));
}

TEST(DataCifar, MalformedBatchesAreRejected) {
  DataTempDir d;
  write_bytes(d.file("size.bin"), cifar_batch(2) + "abcde");
  std::string msg = data_error_of([&] { sgdstab::read_cifar10_batch(d.file("size.bin")); });
  EXPECT_TRUE(contains(msg, "size 6151 bytes is not a multiple of the 3073-byte record") &&
              contains(msg, "2 records and 5 bytes left over") && contains(msg, d.file("size.bin")))
      << msg;
  write_bytes(d.file("short.bin"), cifar_batch(1).substr(0, 3000));
  msg = data_error_of([&] { sgdstab::read_cifar10_batch(d.file("short.bin")); });
  EXPECT_TRUE(contains(msg, "0 records and 3000 bytes left over")) << msg;
  write_bytes(d.file("label.bin"), cifar_batch(5, 0, /*bad_record=*/3));
  msg = data_error_of([&] { sgdstab::read_cifar10_batch(d.file("label.bin")); });
  EXPECT_TRUE(contains(msg, "record 3 has label 10, expected 0..9")) << msg;
  write_bytes(d.file("empty.bin"), "");
  msg = data_error_of([&] { sgdstab::read_cifar10_batch(d.file("empty.bin")); });
  EXPECT_TRUE(contains(msg, "the file is empty")) << msg;
  msg = data_error_of([&] { sgdstab::read_cifar10_batch(d.file("none.bin")); });
  EXPECT_TRUE(contains(msg, "none.bin: CIFAR-10 batch file not found")) << msg;
  msg = data_error_of([&] { sgdstab::read_cifar10_batch(d.path()); });
  EXPECT_TRUE(contains(msg, "not a regular file")) << msg;
}

TEST(DataCifar, TrainConcatenatesTheFiveBatchesTestReadsTestBatch) {
  DataTempDir d;
  int offset = 0;
  for (int k = 1; k <= 5; ++k) {
    write_bytes(d.file("data_batch_" + std::to_string(k) + ".bin"), cifar_batch(k + 1, offset));
    offset += k + 1;
  }
  write_bytes(d.file("test_batch.bin"), cifar_batch(4, 100));
  const sgdstab::LabeledImages train = sgdstab::read_cifar10(d.path(), true);
  ASSERT_EQ(train.pixels.rows(), offset);  // 2 + 3 + 4 + 5 + 6 = 20
  for (int r = 0; r < offset; ++r) {
    EXPECT_EQ(train.labels[static_cast<std::size_t>(r)], r % 10);
    EXPECT_EQ(train.pixels(r, 2048 + 5 * 32 + 9), cifar_pixel(r, 2, 5, 9)) << r;
  }
  const sgdstab::LabeledImages test = sgdstab::read_cifar10(d.path() + "/", false);
  ASSERT_EQ(test.pixels.rows(), 4);
  EXPECT_EQ(test.pixels(1, 0), cifar_pixel(101, 0, 0, 0));

  std::remove(d.file("data_batch_3.bin").c_str());
  std::string msg = data_error_of([&] { sgdstab::read_cifar10(d.path(), true); });
  EXPECT_TRUE(contains(msg, d.file("data_batch_3.bin")) &&
              contains(msg, "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz") &&
              contains(msg, "cifar-10-batches-bin"))
      << msg;
  msg = data_error_of([&] { sgdstab::read_cifar10(d.file("nowhere"), false); });
  EXPECT_TRUE(contains(msg, "no such directory") && contains(msg, "cifar-10-binary.tar.gz")) << msg;
}

// ---- selection, one-hot, scaling -------------------------------------------------

// 20 images of 3 pixels; labels cycle 0,1,2,3,1 so class 1 has 8 samples, the others 4.
sgdstab::LabeledImages small_images() {
  sgdstab::LabeledImages im;
  im.rows = 1;
  im.cols = 3;
  im.channels = 1;
  im.pixels.resize(20, 3);
  const int cycle[5] = {0, 1, 2, 3, 1};
  for (int i = 0; i < 20; ++i) {
    im.labels.push_back(cycle[i % 5]);
    im.pixels(i, 0) = static_cast<std::uint8_t>(i * 11);
    im.pixels(i, 1) = static_cast<std::uint8_t>(255 - i * i % 200);
    im.pixels(i, 2) = 77;  // constant feature
  }
  return im;
}

TEST(DataSelect, ClassMajorBlocksInFileOrderWithOneHotOverSelectedClasses) {
  const auto im = small_images();
  const sgdstab::Dataset ds = sgdstab::select_classes(im, {{3, 1}, 3}, sgdstab::PixelScaling::none, "toy");
  // class 3: samples 3, 8, 13; class 1: samples 1, 4, 6
  const std::vector<int> src = {3, 8, 13, 1, 4, 6};
  ASSERT_EQ(ds.samples(), 6);
  ASSERT_EQ(ds.input_dim(), 3);
  ASSERT_EQ(ds.outputs(), 2);
  for (int r = 0; r < 6; ++r) {
    for (int j = 0; j < 3; ++j) EXPECT_EQ(ds.inputs(r, j), static_cast<double>(im.pixels(src[r], j)));
    EXPECT_EQ(ds.labels[static_cast<std::size_t>(r)], im.labels[static_cast<std::size_t>(src[r])]);
    EXPECT_EQ(ds.targets(r, 0), r < 3 ? 1.0 : 0.0);  // column 0 is classes[0] = 3
    EXPECT_EQ(ds.targets(r, 1), r < 3 ? 0.0 : 1.0);
  }
  EXPECT_EQ(ds.description, "toy: classes 3,1 x 3, pixels none");
  ds.validate();

  // per_class = 0: all of each class; classes empty: every class present, ascending
  const sgdstab::Dataset all = sgdstab::select_classes(im, {{}, 0}, sgdstab::PixelScaling::none, "", 10);
  ASSERT_EQ(all.samples(), 20);
  EXPECT_EQ(all.outputs(), 4);  // classes 4..9 are absent
  std::vector<int> expect_labels;
  for (int k = 0; k < 4; ++k)
    for (int i = 0; i < 20; ++i)
      if (im.labels[static_cast<std::size_t>(i)] == k) expect_labels.push_back(k);
  EXPECT_EQ(all.labels, expect_labels);
  EXPECT_EQ(all.description, "classes 0,1,2,3 x all, pixels none");
  for (Index r = 0; r < 20; ++r) EXPECT_EQ(all.targets.row(r).sum(), 1.0);
  EXPECT_EQ(all.targets.col(1).sum(), 8.0);
  EXPECT_EQ(sgdstab::select_classes(im, {{1}, 0}, sgdstab::PixelScaling::none, "").samples(), 8);
}

TEST(DataSelect, ScalingModesMatchHandComputation) {
  const auto im = small_images();
  const sgdstab::Selection sel{{0, 2}, 4};
  const std::vector<int> src = {0, 5, 10, 15, 2, 7, 12, 17};
  const double n = 8;
  double mean[3] = {0, 0, 0}, var[3] = {0, 0, 0};
  for (int j = 0; j < 3; ++j) {
    for (int s : src) mean[j] += im.pixels(s, j);
    mean[j] /= n;
    for (int s : src) var[j] += (im.pixels(s, j) - mean[j]) * (im.pixels(s, j) - mean[j]);
    var[j] /= n;
  }
  ASSERT_EQ(var[2], 0.0);
  const auto unit = sgdstab::select_classes(im, sel, sgdstab::PixelScaling::unit, "t");
  const auto center = sgdstab::select_classes(im, sel, sgdstab::PixelScaling::center, "t");
  const auto standard = sgdstab::select_classes(im, sel, sgdstab::PixelScaling::standardize, "t");
  for (int r = 0; r < 8; ++r)
    for (int j = 0; j < 3; ++j) {
      const double p = im.pixels(src[r], j);
      EXPECT_NEAR(unit.inputs(r, j), p / 255.0, 1e-15);
      EXPECT_NEAR(center.inputs(r, j), p / 255.0 - mean[j] / 255.0, 1e-14);
      EXPECT_NEAR(standard.inputs(r, j), var[j] > 0 ? (p - mean[j]) / std::sqrt(var[j]) : 0.0, 1e-12);
    }
  EXPECT_EQ(standard.inputs.col(2), VectorXd::Zero(8));  // constant feature left at 0
  EXPECT_NEAR(standard.inputs.col(0).squaredNorm() / n, 1.0, 1e-12);
  EXPECT_EQ(standard.description, "t: classes 0,2 x 4, pixels standardize");

  for (auto s : {sgdstab::PixelScaling::none, sgdstab::PixelScaling::unit, sgdstab::PixelScaling::standardize,
                 sgdstab::PixelScaling::center})
    EXPECT_EQ(sgdstab::parse<sgdstab::PixelScaling>(sgdstab::to_string(s)), s);
  EXPECT_TRUE(contains(data_invalid_argument_of([] { sgdstab::parse<sgdstab::PixelScaling>("scale"); }),
                       "pixel scaling: expected one of none|unit|standardize|center, got 'scale'"));
}

TEST(DataSelect, InvalidSelectionsAreRejected) {
  auto im = small_images();
  auto select = [&](const sgdstab::Selection& s, int num_classes = 10) {
    return data_invalid_argument_of([&] { sgdstab::select_classes(im, s, sgdstab::PixelScaling::unit, "toy", num_classes); });
  };
  EXPECT_TRUE(contains(select({{0, 3}, 5}), "class 0 has 4 samples, 5 requested")) << select({{0, 3}, 5});
  EXPECT_TRUE(contains(select({{1, 2}, 5}), "class 2 has 4 samples, 5 requested"));
  EXPECT_TRUE(contains(select({{1, 0, 1}, 2}), "class 1 is listed twice"));
  EXPECT_TRUE(contains(select({{10}, 1}), "class 10 is outside [0, 10)"));
  EXPECT_TRUE(contains(select({{-1}, 1}), "class -1 is outside [0, 10)"));
  EXPECT_TRUE(contains(select({{3}, 1}, 3), "label of sample 3 is 3, outside [0, 3)"));
  EXPECT_TRUE(contains(select({{7}, 0}), "class 7 has no samples"));
  EXPECT_TRUE(contains(select({{1}, -2}), "per_class = -2 must be >= 0"));
  EXPECT_TRUE(contains(select({{1}, 1}, 0), "num_classes = 0 must be >= 1"));
  im.labels[4] = 12;
  EXPECT_TRUE(contains(select({{0}, 1}), "label of sample 4 is 12, outside [0, 10)"));
  im.labels.pop_back();
  EXPECT_TRUE(contains(select({{0}, 1}), "19 labels for 20 images"));
}

TEST(DataSelect, OneHot) {
  const MatrixXd y = sgdstab::one_hot({5, 2, 5, 7}, {7, 5, 2});
  MatrixXd expect(4, 3);
  expect << 0, 1, 0,  //
      0, 0, 1,        //
      0, 1, 0,        //
      1, 0, 0;
  EXPECT_EQ(y, expect);
  EXPECT_EQ(sgdstab::one_hot({}, {1}).rows(), 0);
  EXPECT_TRUE(contains(data_invalid_argument_of([] { sgdstab::one_hot({1, 3}, {1, 2}); }),
                       "labels[1] = 3 is not among the classes 1,2"));
  EXPECT_TRUE(contains(data_invalid_argument_of([] { sgdstab::one_hot({1}, {}); }), "classes is empty"));
  EXPECT_TRUE(contains(data_invalid_argument_of([] { sgdstab::one_hot({1}, {1, 1}); }), "class 1 is listed twice"));
}

// ---- generators ------------------------------------------------------------------

TEST(DataGenerators, GaussianInputsAreDeterministicAndSampleMajor) {
  const MatrixXd a = sgdstab::gaussian_inputs(9, 4, 17);
  EXPECT_EQ(a, sgdstab::gaussian_inputs(9, 4, 17));
  EXPECT_GT((a - sgdstab::gaussian_inputs(9, 4, 18)).cwiseAbs().minCoeff(), 0.0);
  EXPECT_EQ(sgdstab::gaussian_inputs(5, 4, 17), a.topRows(5));  // rows do not depend on n
  sgdstab::Rng rng(17);  // documented draw order: sample by sample
  for (Index i = 0; i < 9; ++i)
    for (Index j = 0; j < 4; ++j) EXPECT_EQ(a(i, j), rng.normal());
  const VectorXd s = (VectorXd(4) << 4.0, 1.0, 0.0, 0.25).finished();
  const MatrixXd b = sgdstab::gaussian_inputs(9, s, 17);
  for (Index j = 0; j < 4; ++j) EXPECT_EQ(b.col(j), (a.col(j) * std::sqrt(s(j))).eval());

  EXPECT_THROW(sgdstab::gaussian_inputs(0, 3, 1), sgdstab::invalid_argument);
  EXPECT_THROW(sgdstab::gaussian_inputs(3, 0, 1), sgdstab::invalid_argument);
  EXPECT_THROW(sgdstab::gaussian_inputs(3, VectorXd(), 1), sgdstab::invalid_argument);
  EXPECT_TRUE(contains(data_invalid_argument_of([] { sgdstab::gaussian_inputs(3, VectorXd::Constant(2, -1.0), 1); }),
                       "covariance_spectrum(0) = -1 must be finite and >= 0"));
  EXPECT_THROW(sgdstab::gaussian_inputs(3, VectorXd::Constant(2, std::nan("")), 1), sgdstab::invalid_argument);
}

TEST(DataGenerators, GaussianMomentsMatchTheSpectrum) {
  const Index n = 200000;
  const VectorXd s = sgdstab::power_law_spectrum(4, 1.5);  // 1, 0.354, 0.192, 0.125
  const MatrixXd x = sgdstab::gaussian_inputs(n, s, 2024);
  const VectorXd mean = x.colwise().mean().transpose();
  const MatrixXd centered = x.rowwise() - mean.transpose();
  const MatrixXd cov = centered.transpose() * centered / static_cast<double>(n);
  const double nd = static_cast<double>(n);
  for (Index j = 0; j < 4; ++j) {
    // 5 standard errors: mean ~ N(0, s/n), variance ~ N(s, 2 s^2 / n)
    EXPECT_LT(std::abs(mean(j)), 5 * std::sqrt(s(j) / nd)) << j;
    EXPECT_LT(std::abs(cov(j, j) - s(j)), 5 * std::sqrt(2.0 / nd) * s(j)) << j;
    for (Index k = 0; k < j; ++k) EXPECT_LT(std::abs(cov(j, k)), 5 * std::sqrt(s(j) * s(k) / nd)) << j << "," << k;
  }
  // fourth moment of a standard normal is 3
  const VectorXd z = x.col(0);
  EXPECT_NEAR(z.array().pow(4).mean(), 3.0, 5 * std::sqrt(96.0 / nd));
}

TEST(DataGenerators, PowerLawSpectrum) {
  const VectorXd s = sgdstab::power_law_spectrum(5, 2.0);
  for (int k = 1; k <= 5; ++k) EXPECT_DOUBLE_EQ(s(k - 1), 1.0 / (k * k));
  EXPECT_EQ(sgdstab::power_law_spectrum(3, 0.0), VectorXd::Ones(3));
  EXPECT_THROW(sgdstab::power_law_spectrum(0, 1.0), sgdstab::invalid_argument);
  EXPECT_THROW(sgdstab::power_law_spectrum(3, std::nan("")), sgdstab::invalid_argument);
  EXPECT_THROW(sgdstab::power_law_spectrum(3, 2000.0), sgdstab::invalid_argument);  // underflows to 0
}

TEST(DataGenerators, CurvatureDataset) {
  const VectorXd a = (VectorXd(5) << 0.0, 0.5, 1.0, 2.0, 9.0).finished();
  const sgdstab::Dataset ds = sgdstab::curvature_dataset(a);
  ds.validate();
  ASSERT_EQ(ds.samples(), 5);
  EXPECT_EQ(ds.input_dim(), 1);
  EXPECT_EQ(ds.outputs(), 1);
  EXPECT_TRUE(ds.labels.empty());
  EXPECT_EQ(ds.targets, MatrixXd::Zero(5, 1));
  // h_i = (d f / d theta)^2 = x_i^2 for f = theta x
  for (Index i = 0; i < 5; ++i) EXPECT_NEAR(ds.inputs(i, 0) * ds.inputs(i, 0), a(i), 4e-16 * a(i));
  EXPECT_EQ(ds.inputs(4, 0), 3.0);
  EXPECT_TRUE(contains(data_invalid_argument_of([] { sgdstab::curvature_dataset(VectorXd::Constant(2, -0.5)); }),
                       "curvatures(0) = -0.5 must be finite and >= 0"));
  EXPECT_THROW(sgdstab::curvature_dataset(VectorXd()), sgdstab::invalid_argument);
  EXPECT_THROW(sgdstab::curvature_dataset(VectorXd::Constant(1, HUGE_VAL)), sgdstab::invalid_argument);
}

TEST(DataGenerators, Regression1d) {
  const double pi = 3.141592653589793;
  const std::vector<std::pair<std::string, std::function<double(double)>>> fs = {
      {"sine", [&](double x) { return std::sin(pi * x); }},
      {"abs", [](double x) { return std::fabs(x); }},
      {"quadratic", [](double x) { return x * x; }},
      {"step", [](double x) { return x > 0 ? 1.0 : -1.0; }},
  };
  const sgdstab::Dataset first = sgdstab::regression_1d(300, "sine", 5);
  for (const auto& [name, g] : fs) {
    const sgdstab::Dataset ds = sgdstab::regression_1d(300, name, 5);
    ds.validate();
    ASSERT_EQ(ds.samples(), 300);
    EXPECT_EQ(ds.inputs, first.inputs) << "x does not depend on the function";
    EXPECT_GE(ds.inputs.minCoeff(), -1.0);
    EXPECT_LT(ds.inputs.maxCoeff(), 1.0);
    EXPECT_LT(ds.inputs.minCoeff(), -0.9);
    EXPECT_GT(ds.inputs.maxCoeff(), 0.9);
    for (Index i = 0; i < 300; ++i) EXPECT_NEAR(ds.targets(i, 0), g(ds.inputs(i, 0)), 1e-15) << name;
  }
  sgdstab::Rng rng(5);  // x = 2u - 1 in draw order (not sorted)
  for (Index i = 0; i < 300; ++i) EXPECT_EQ(first.inputs(i, 0), 2.0 * rng.uniform() - 1.0);
  EXPECT_NE(sgdstab::regression_1d(300, "sine", 6).inputs, first.inputs);
  EXPECT_TRUE(contains(data_invalid_argument_of([] { sgdstab::regression_1d(3, "cosine", 1); }),
                       "'cosine' is not one of sine, abs, quadratic, step"));
  EXPECT_THROW(sgdstab::regression_1d(0, "abs", 1), sgdstab::invalid_argument);
}

TEST(DataGenerators, SplitColumnsAndTableFiles) {
  MatrixXd t(3, 4);
  t << 1, 2, 3, 4,  //
      5, 6, 7, 8,   //
      9, 10, 11, 12;
  const sgdstab::Dataset ds = sgdstab::split_columns(t, 1, "t");
  EXPECT_EQ(ds.inputs, t.leftCols(3));
  EXPECT_EQ(ds.targets, t.rightCols(1));
  const sgdstab::Dataset ds3 = sgdstab::split_columns(t, 3, "t");
  EXPECT_EQ(ds3.input_dim(), 1);
  EXPECT_EQ(ds3.targets(2, 0), 10.0);
  EXPECT_TRUE(contains(data_invalid_argument_of([&] { sgdstab::split_columns(t, 4, "t"); }),
                       "outputs = 4 must satisfy 1 <= outputs < columns = 4"));
  EXPECT_THROW(sgdstab::split_columns(t, 0, "t"), sgdstab::invalid_argument);
  EXPECT_THROW(sgdstab::split_columns(MatrixXd(0, 3), 1, "t"), sgdstab::invalid_argument);
  MatrixXd bad = t;
  bad(1, 3) = std::nan("");
  EXPECT_TRUE(contains(data_invalid_argument_of([&] { sgdstab::split_columns(bad, 1, "t"); }), "targets(1, 0)"));

  DataTempDir d;
  write_bytes(d.file("t.csv"), "1,2,0.5\n3,4,-0.5\n");
  const sgdstab::Dataset f = sgdstab::read_table_dataset(d.file("t.csv"), 1);
  EXPECT_EQ(f.inputs, (MatrixXd(2, 2) << 1, 2, 3, 4).finished());
  EXPECT_EQ(f.targets, (MatrixXd(2, 1) << 0.5, -0.5).finished());
  EXPECT_TRUE(contains(f.description, d.file("t.csv")));
  const std::string msg = data_invalid_argument_of([&] { sgdstab::read_table_dataset(d.file("t.csv"), 3); });
  EXPECT_TRUE(contains(msg, d.file("t.csv")) && contains(msg, "columns = 3")) << msg;
  EXPECT_THROW(sgdstab::read_table_dataset(d.file("none.csv"), 1), sgdstab::io_error);
}

TEST(DataGenerators, ValidateNamesTheViolation) {
  sgdstab::Dataset ds;
  ds.inputs = MatrixXd::Ones(3, 2);
  ds.targets = MatrixXd::Ones(3, 1);
  ds.description = "demo";
  ds.validate();
  auto msg = [](const sgdstab::Dataset& x) { return data_invalid_argument_of([&] { x.validate(); }); };
  sgdstab::Dataset e = ds;
  e.targets = MatrixXd::Ones(2, 1);
  EXPECT_TRUE(contains(msg(e), "inputs has 3 rows but targets has 2")) << msg(e);
  e = ds;
  e.inputs = MatrixXd(0, 2);
  e.targets = MatrixXd(0, 1);
  EXPECT_TRUE(contains(msg(e), "at least one sample")) << msg(e);
  e = ds;
  e.inputs = MatrixXd(3, 0);
  EXPECT_TRUE(contains(msg(e), "d >= 1")) << msg(e);
  e = ds;
  e.targets = MatrixXd(3, 0);
  EXPECT_TRUE(contains(msg(e), "c >= 1")) << msg(e);
  e = ds;
  e.inputs(2, 1) = HUGE_VAL;
  EXPECT_TRUE(contains(msg(e), "inputs(2, 1) = inf is not finite")) << msg(e);
  e = ds;
  e.labels = {1, 2};
  EXPECT_TRUE(contains(msg(e), "labels has 2 entries, expected 0 or n = 3")) << msg(e);
  EXPECT_TRUE(contains(msg(e), "'demo'")) << msg(e);
}

}  // namespace
