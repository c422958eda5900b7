// CSV and .npy readers: round trips, hand-made files, and every corruption.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <limits>
#include <utility>
#include <fstream>
#include <unistd.h>
#include <zlib.h>

#include "reference.hpp"
#include "sgdstab/sgdstab.hpp"
#include "temp_files.hpp"

using Eigen::MatrixXd;

namespace {

using testing_files::read_bytes;
using testing_files::write_bytes;

// Scratch directory named after this suite.
class TempDir : public testing_files::TempDir {
 public:
  TempDir() : testing_files::TempDir("sgdstab_io") {}
};

std::string io_error_of(const std::string& path) {
  try {
    sgdstab::read_matrix(path);
  } catch (const sgdstab::io_error& e) {
    return e.what();
  }
  return "(no io_error)";
}

// A hand-built .npy (independent of write_npy).
std::string npy(const std::string& descr, bool fortran, const std::string& shape, const std::string& data,
                int version = 1) {
  std::string header = "{'descr': '" + descr + "', 'fortran_order': " + (fortran ? "True" : "False") +
                       ", 'shape': " + shape + ", }";
  const std::size_t pre = version == 1 ? 10 : 12;
  header.append((64 - (pre + header.size() + 1) % 64) % 64, ' ');
  header += '\n';
  std::string out("\x93NUMPY", 6);
  out += static_cast<char>(version);
  out += '\0';
  const std::size_t len = header.size();
  out += static_cast<char>(len & 0xff);
  out += static_cast<char>((len >> 8) & 0xff);
  if (version != 1) out += std::string(2, '\0');
  return out + header + data;
}

template <class T>
std::string raw(std::initializer_list<T> values, bool swap = false) {
  std::string s;
  for (T v : values) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    if (swap) std::reverse(b, b + sizeof(T));
    s.append(b, sizeof(T));
  }
  return s;
}

TEST(MatrixIO, RoundTrips) {
  TempDir d;
  const MatrixXd m = ref::gaussian(7, 5, 61);
  sgdstab::write_csv(d.file("m.csv"), m);
  sgdstab::write_npy(d.file("m.npy"), m);
  EXPECT_EQ(sgdstab::read_matrix(d.file("m.csv")), m);  // 17 digits round-trip exactly
  EXPECT_EQ(sgdstab::read_matrix(d.file("m.npy")), m);
}

TEST(MatrixIO, HandMadeNpyVariants) {
  TempDir d;
  MatrixXd expect(2, 3);
  expect << 1, 2, 3, 4, 5, 6;
  write_bytes(d.file("c8.npy"), npy("<f8", false, "(2, 3)", raw<double>({1, 2, 3, 4, 5, 6})));
  write_bytes(d.file("f8.npy"), npy("<f8", true, "(2, 3)", raw<double>({1, 4, 2, 5, 3, 6})));
  write_bytes(d.file("c4.npy"), npy("<f4", false, "(2, 3)", raw<float>({1, 2, 3, 4, 5, 6})));
  write_bytes(d.file("be.npy"), npy(">f8", false, "(2, 3)", raw<double>({1, 2, 3, 4, 5, 6}, true)));
  write_bytes(d.file("v2.npy"), npy("<f8", false, "(2, 3)", raw<double>({1, 2, 3, 4, 5, 6}), 2));
  for (const char* f : {"c8.npy", "f8.npy", "c4.npy", "be.npy", "v2.npy"})
    EXPECT_EQ(sgdstab::read_matrix(d.file(f)), expect) << f;
}

TEST(MatrixIO, NpyRowSlicesEqualTheWholeMatrixInEveryLayout) {
  TempDir d;
  MatrixXd whole(3, 2);
  whole << 1, 2, 3, 4, 5, 6;
  write_bytes(d.file("c8.npy"), npy("<f8", false, "(3, 2)", raw<double>({1, 2, 3, 4, 5, 6})));
  write_bytes(d.file("f8.npy"), npy("<f8", true, "(3, 2)", raw<double>({1, 3, 5, 2, 4, 6})));
  write_bytes(d.file("c4.npy"), npy("<f4", false, "(3, 2)", raw<float>({1, 2, 3, 4, 5, 6})));
  write_bytes(d.file("be.npy"), npy(">f8", true, "(3, 2)", raw<double>({1, 3, 5, 2, 4, 6}, true)));
  for (const char* f : {"c8.npy", "f8.npy", "c4.npy", "be.npy"}) {
    EXPECT_EQ(sgdstab::npy_shape(d.file(f)), (std::pair<long long, long long>{3, 2})) << f;
    for (long long first = 0; first <= 3; ++first)
      for (long long count = 0; first + count <= 3; ++count)
        EXPECT_EQ(sgdstab::read_npy_rows(d.file(f), first, count), whole.middleRows(first, count))
            << f << " rows " << first << " + " << count;
  }
  // Rows outside the matrix, a NaN in the rows read (and not one outside them),
  // and a truncated file (checked from the header and the size alone).
  auto error_of = [&](const std::string& path, long long first, long long count) {
    try {
      sgdstab::read_npy_rows(path, first, count);
    } catch (const sgdstab::io_error& e) {
      return std::string(e.what());
    }
    return std::string("(no io_error)");
  };
  EXPECT_NE(error_of(d.file("c8.npy"), 2, 2).find("outside the matrix's 3 rows"), std::string::npos);
  EXPECT_NE(error_of(d.file("c8.npy"), -1, 1).find("outside"), std::string::npos);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  write_bytes(d.file("nan.npy"), npy("<f8", false, "(3, 2)", raw<double>({1, 2, 3, 4, nan, 6})));
  EXPECT_NE(error_of(d.file("nan.npy"), 1, 2).find("element 4 is not finite"), std::string::npos);
  EXPECT_EQ(sgdstab::read_npy_rows(d.file("nan.npy"), 0, 2), whole.topRows(2));
  const std::string full = read_bytes(d.file("c8.npy"));
  write_bytes(d.file("cut.npy"), full.substr(0, full.size() - 1));
  EXPECT_NE(error_of(d.file("cut.npy"), 0, 1).find("truncated data"), std::string::npos);
  EXPECT_NE(error_of(d.file("missing.npy"), 0, 1).find("cannot open"), std::string::npos);
}

TEST(MatrixIO, CsvAcceptsWhitespaceAndTrailingBlankLines) {
  TempDir d;
  write_bytes(d.file("a.csv"), "1, 2.5e0 ,-3\r\n4,5,6\n\n  \n");
  MatrixXd expect(2, 3);
  expect << 1, 2.5, -3, 4, 5, 6;
  EXPECT_EQ(sgdstab::read_matrix(d.file("a.csv")), expect);
}

TEST(MatrixIO, CorruptCsvIsRejected) {
  TempDir d;
  const std::pair<const char*, const char*> cases[] = {
      {"", "empty"},
      {"\n\n", "empty"},
      {"1,2,3\n4,5\n", "line 2 has 2 fields, expected 3"},
      {"1,2\n3,abc\n", "line 2, field 2 is not a number: 'abc'"},
      {"1,,2\n", "line 1, field 2 is empty"},
      {"1,nan\n", "not finite"},
      {"1,inf\n", "not finite"},
      {"1;2\n", "not a number"},
  };
  for (const auto& [text, msg] : cases) {
    write_bytes(d.file("bad.csv"), text);
    EXPECT_NE(io_error_of(d.file("bad.csv")).find(msg), std::string::npos)
        << "input '" << text << "': " << io_error_of(d.file("bad.csv"));
  }
  EXPECT_NE(io_error_of(d.file("missing.csv")).find("cannot open"), std::string::npos);
}

TEST(MatrixIO, NpyCutAtEveryByteIsRejected) {
  TempDir d;
  sgdstab::write_npy(d.file("full.npy"), ref::gaussian(3, 2, 62));
  const std::string full = read_bytes(d.file("full.npy"));
  for (std::size_t len = 0; len < full.size(); ++len) {
    write_bytes(d.file("cut.npy"), full.substr(0, len));
    const std::string err = io_error_of(d.file("cut.npy"));
    EXPECT_NE(err.find("not a valid .npy file"), std::string::npos) << "cut at " << len << ": " << err;
  }
  write_bytes(d.file("long.npy"), full + "x");
  EXPECT_NE(io_error_of(d.file("long.npy")).find("unexpected bytes"), std::string::npos);
}

TEST(MatrixIO, MalformedNpyHeadersAreRejected) {
  TempDir d;
  const std::string six = raw<double>({1, 2, 3, 4, 5, 6});
  const std::pair<std::string, const char*> cases[] = {
      {"NUMPY\x01\x00" + std::string(60, ' '), "wrong magic"},
      {npy("<i8", false, "(2, 3)", six), "dtype '<i8' is not supported"},
      {npy("<f8", false, "(6,)", six), "expected a 2-D array"},
      {npy("<f8", false, "(1, 2, 3)", six), "expected a 2-D array"},
      {npy("<f8", false, "(0, 3)", ""), "empty"},
      {npy("<f8", false, "(2, 4)", six), "truncated data"},
      {npy("<f8", false, "(2, 3)", raw<double>({1, 2, 3, 4, 5, std::nan("")})), "not finite"},
  };
  for (const auto& [bytes, msg] : cases) {
    write_bytes(d.file("bad.npy"), bytes);
    EXPECT_NE(io_error_of(d.file("bad.npy")).find(msg), std::string::npos) << io_error_of(d.file("bad.npy"));
  }
  std::string v9 = npy("<f8", false, "(2, 3)", six);
  v9[6] = 9;
  write_bytes(d.file("v9.npy"), v9);
  EXPECT_NE(io_error_of(d.file("v9.npy")).find("unsupported format version 9"), std::string::npos);
}

TEST(MatrixIO, WritersLeaveNoPartialFile) {
  EXPECT_THROW(sgdstab::write_csv("/nonexistent_dir/x.csv", MatrixXd::Ones(2, 2)), sgdstab::io_error);
  EXPECT_THROW(sgdstab::write_npy("/nonexistent_dir/x.npy", MatrixXd::Ones(2, 2)), sgdstab::io_error);
}

}  // namespace

// write_matrix picks the format by extension, like read_matrix: the bytes on
// disk are .npy (magic number) or CSV text, and both read back exactly.
TEST(MatrixIO, WriteMatrixChoosesTheFormatByExtension) {
  TempDir d;
  const MatrixXd m = ref::gaussian(3, 4, 9);
  sgdstab::write_matrix(d.file("m.npy"), m);
  sgdstab::write_matrix(d.file("m.csv"), m);
  EXPECT_EQ(read_bytes(d.file("m.npy")).substr(0, 6), std::string("\x93NUMPY"));
  EXPECT_NE(read_bytes(d.file("m.csv")).find(','), std::string::npos);
  EXPECT_EQ(sgdstab::read_npy(d.file("m.npy")), m);
  EXPECT_EQ(sgdstab::read_csv(d.file("m.csv")), m);
}

// write_text: the exact bytes, replacing an older file whole; an unwritable
// path is an io_error naming it and leaves nothing behind.
TEST(MatrixIO, WriteTextIsExactAndAtomic) {
  TempDir d;
  sgdstab::write_text(d.file("t.csv"), "a,b\n1,2\n");
  sgdstab::write_text(d.file("t.csv"), "x\n");
  EXPECT_EQ(read_bytes(d.file("t.csv")), "x\n");
  try {
    sgdstab::write_text("/nonexistent_dir/t.svg", "<svg/>");
    FAIL() << "expected an io_error";
  } catch (const sgdstab::io_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent_dir/t.svg"), std::string::npos) << e.what();
  }
}

// Regressions found by fuzzing (fuzz/corpus/*/regression_*, docs/reliability.md).
TEST(FuzzRegressions, NpyWithAnEmptyShapeIsAnIoError) {
  testing_files::TempDir dir;
  const std::string path = SGDSTAB_SOURCE_DIR "/fuzz/corpus/npy/regression_empty_shape";
  // Before: std::out_of_range from substr escaped read_npy.
  EXPECT_THROW(sgdstab::read_npy(path), sgdstab::io_error);
  const std::string header = "{'descr': '<f8', 'fortran_order': False, 'shape':, }";
  std::string bytes = std::string("\x93NUMPY\x01\x00", 8);
  std::string h = header + std::string(64 - (10 + header.size() + 1) % 64, ' ') + "\n";
  bytes += static_cast<char>(h.size() & 0xff);
  bytes += static_cast<char>(h.size() >> 8);
  bytes += h + std::string(16, '\0');
  testing_files::write_bytes(dir.file("e.npy"), bytes);
  EXPECT_THROW(sgdstab::read_npy(dir.file("e.npy")), sgdstab::io_error);
}

TEST(FuzzRegressions, GzipIdxClaimingGigabytesIsTruncatedNotAllocated) {
  testing_files::TempDir dir;
  // float64, 8 x 2^24 elements (1 GiB) claimed, 16 bytes present, gzip-compressed.
  const unsigned char idx[] = {0, 0, 0x0e, 2, 0, 0, 0, 8, 1, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  const std::string path = dir.file("x.idx.gz");
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  gzwrite(f, idx, sizeof idx);
  gzclose(f);
  try {
    (void)sgdstab::read_idx(path);
    ADD_FAILURE() << "read_idx accepted a truncated file";
  } catch (const sgdstab::io_error& e) {
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
}

TEST(FuzzRegressions, NpyShapeBeyondLongLongIsAnIoError) {
  // Before: the byte count (a double) was cast to long long for the message: undefined behaviour.
  EXPECT_THROW(sgdstab::read_npy(SGDSTAB_SOURCE_DIR "/fuzz/corpus/npy/regression_shape_beyond_long_long"),
               sgdstab::io_error);
}
