#include "sgdstab/matrix_io.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <new>
#include <sstream>
#include <vector>

#include "foundations/interrupt_detail.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/interrupt.hpp"
#include "sgdstab/memory.hpp"

namespace sgdstab {

using Eigen::MatrixXd;

namespace {

// stat() of a file about to be read; a folder is refused by name (its size
// reads as 2^63 - 1 on ext4). False when stat() fails (the open says why).
bool stat_input(const std::string& path, struct stat& st) {
  const bool known = ::stat(path.c_str(), &st) == 0;
  if (known && S_ISDIR(st.st_mode)) throw io_error(path + ": is a directory, not a file");
  return known;
}

// The whole file. An allocation that fails is a resource_error naming the
// file and its size, never a short read: `ss << in.rdbuf()` swallowed the
// std::bad_alloc of a growing buffer and returned what it had, which the
// .npy reader then called a truncated file (found under `ulimit -v`,
// docs/reliability.md, "Memory"). A regular file is read in one allocation of
// its size; a pipe (`--gram <(...)`) in chunks.
std::string slurp(const std::string& path) {
  struct stat st {};
  const bool known = stat_input(path, st);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw io_error(path + ": cannot open for reading (" + std::strerror(errno) + ")");
  auto out_of_memory = [&](double bytes) {
    return resource_error(path + ": reading the file needs about " + format_bytes(bytes) +
                          " and that memory could not be allocated");
  };
  std::string bytes;
  // A regular file of known size in one allocation; anything else (a pipe,
  // a /proc file that reports size 0) to its end in chunks.
  if (known && S_ISREG(st.st_mode) && st.st_size > 0) {
    const std::streamoff size = st.st_size;
    check_memory(static_cast<double>(size), path + ": reading the file");
    try {
      bytes.resize(static_cast<std::size_t>(size));
    } catch (const std::bad_alloc&) {
      throw out_of_memory(static_cast<double>(size));
    }
    in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (in.gcount() != static_cast<std::streamsize>(bytes.size()))
      throw io_error(path + ": read error after " + std::to_string(in.gcount()) + " of " + std::to_string(size) +
                     " bytes");
    if (in.peek() != std::char_traits<char>::eof())
      throw io_error(path + ": the file grew while it was read (" + std::to_string(size) + " bytes expected)");
    return bytes;
  }
  std::vector<char> chunk(std::size_t{1} << 20);
  while (in) {
    in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    try {
      bytes.append(chunk.data(), static_cast<std::size_t>(in.gcount()));
    } catch (const std::bad_alloc&) {
      throw out_of_memory(static_cast<double>(bytes.size()) + static_cast<double>(chunk.size()));
    }
  }
  if (in.bad()) throw io_error(path + ": read error");
  return bytes;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

void atomic_write(const std::string& path, const std::string& bytes) {
  static std::atomic<unsigned> counter{0};
  const std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
  const detail::TempFileGuard guard(tmp);  // removed by remove_partial_files() on a hard interrupt
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw io_error(path + ": cannot open for writing (" + std::strerror(errno) + ")");
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      throw io_error(path + ": write failed");
    }
  }
  if (interrupt_requested()) {  // a signal during the write: the file is not put in place
    std::remove(tmp.c_str());
    throw interrupted(path, interrupt_signal());
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw io_error(path + ": cannot move the written file into place (" + std::strerror(errno) + ")");
  }
}

}  // namespace

MatrixXd read_csv(const std::string& path) {
  const std::string text = slurp(path);
  std::vector<double> values;
  Eigen::Index cols = -1, rows = 0;
  std::size_t pos = 0, line_no = 0;
  std::vector<std::string> lines;
  while (pos <= text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
    pos = end + 1;
  }
  while (!lines.empty() && lines.back().find_first_not_of(" \t") == std::string::npos) lines.pop_back();
  if (lines.empty()) throw io_error(path + ": the CSV file is empty");
  for (const std::string& line : lines) {
    ++line_no;
    if ((line_no & 63) == 0) detail::throw_if_interrupted("reading a CSV file");
    Eigen::Index fields = 0;
    std::size_t start = 0;
    while (true) {
      std::size_t comma = line.find(',', start);
      std::string field = line.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      const std::size_t a = field.find_first_not_of(" \t"), b = field.find_last_not_of(" \t");
      field = (a == std::string::npos) ? std::string() : field.substr(a, b - a + 1);
      ++fields;
      if (field.empty())
        throw io_error(path + ": line " + std::to_string(line_no) + ", field " + std::to_string(fields) +
                       " is empty");
      char* endp = nullptr;
      errno = 0;
      const double v = std::strtod(field.c_str(), &endp);
      if (endp != field.c_str() + field.size())
        throw io_error(path + ": line " + std::to_string(line_no) + ", field " + std::to_string(fields) +
                       " is not a number: '" + field + "'");
      if (!std::isfinite(v))
        throw io_error(path + ": line " + std::to_string(line_no) + ", field " + std::to_string(fields) +
                       " is not finite: '" + field + "'");
      values.push_back(v);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    if (cols < 0) cols = fields;
    if (fields != cols)
      throw io_error(path + ": line " + std::to_string(line_no) + " has " + std::to_string(fields) +
                     " fields, expected " + std::to_string(cols) + " (ragged CSV)");
    ++rows;
  }
  MatrixXd m(rows, cols);
  for (Eigen::Index i = 0; i < rows; ++i)
    for (Eigen::Index j = 0; j < cols; ++j) m(i, j) = values[static_cast<std::size_t>(i * cols + j)];
  return m;
}

namespace {

// The parts of a .npy header the reader needs (format 1.0 to 3.0).
struct NpyLayout {
  std::size_t data_start = 0, item = 0;  // item: 8 (float64) or 4 (float32)
  bool big_endian = false, fortran = false;
  long long rows = 0, cols = 0;
  std::string shape;  // as written, for messages
};

class NpyParser {
 public:
  // bytes: the file, or (row slices) a prefix of it holding the header;
  // total: the file's size in bytes.
  NpyParser(const std::string& path, const std::string& bytes, std::size_t total)
      : path_(path), bytes_(bytes), total_(total) {}
  NpyParser(const std::string& path, const std::string& bytes) : NpyParser(path, bytes, bytes.size()) {}
  io_error bad(const std::string& why) const { return io_error(path_ + ": not a valid .npy file: " + why); }
  NpyLayout layout() const;

 private:
  std::string header(std::size_t& data_start) const;
  std::string value_of(const std::string& header, const std::string& key) const;
  void dtype(const std::string& descr, NpyLayout& out) const;
  void shape(const std::string& text, NpyLayout& out) const;
  const std::string& path_;
  const std::string& bytes_;
  std::size_t total_;
};

// The header dictionary text after the magic string, version and length.
std::string NpyParser::header(std::size_t& data_start) const {
  if (bytes_.size() < 10 || bytes_.compare(0, 6, "\x93NUMPY") != 0)
    throw bad(bytes_.size() < 6 ? "too short for the magic string" : "wrong magic string");
  const auto major = static_cast<unsigned char>(bytes_[6]);
  std::size_t header_len = 0, header_start = 0;
  auto byte = [&](std::size_t k) { return static_cast<std::size_t>(static_cast<unsigned char>(bytes_[k])); };
  if (major == 1) {
    header_len = byte(8) | (byte(9) << 8);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (bytes_.size() < 12) throw bad("truncated header length");
    for (int k = 0; k < 4; ++k) header_len |= byte(8 + static_cast<std::size_t>(k)) << (8 * k);
    header_start = 12;
  } else {
    throw bad("unsupported format version " + std::to_string(major));
  }
  if (total_ < header_start + header_len)
    throw bad("truncated header (" + std::to_string(total_) + " bytes, header ends at " +
              std::to_string(header_start + header_len) + ")");
  if (bytes_.size() < header_start + header_len) throw bad("header longer than " + std::to_string(bytes_.size()) + " bytes");
  data_start = header_start + header_len;
  return bytes_.substr(header_start, header_len);
}

// The text of one value of the header dictionary (a tuple keeps its parentheses).
std::string NpyParser::value_of(const std::string& header, const std::string& key) const {
  const std::size_t k = header.find("'" + key + "'");
  if (k == std::string::npos) throw bad("header has no '" + key + "'");
  const std::size_t colon = header.find(':', k);
  const std::size_t v = colon == std::string::npos ? colon : header.find_first_not_of(' ', colon + 1);
  if (v == std::string::npos) throw bad("malformed header near '" + key + "'");
  if (header[v] == '(') {
    const std::size_t close = header.find(')', v);
    if (close == std::string::npos) throw bad("unterminated shape tuple");
    return header.substr(v, close - v + 1);
  }
  const std::size_t end = header.find_first_of(",}", v);
  if (end == std::string::npos) throw bad("malformed header near '" + key + "'");
  std::string out = header.substr(v, end - v);
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

void NpyParser::dtype(const std::string& quoted, NpyLayout& out) const {
  if (quoted.size() < 2 || (quoted.front() != '\'' && quoted.front() != '"')) throw bad("malformed descr " + quoted);
  const std::string descr = quoted.substr(1, quoted.size() - 2);
  if (descr == "<f8" || descr == "=f8" || descr == "f8" || descr == ">f8") out.item = 8;
  else if (descr == "<f4" || descr == "=f4" || descr == "f4" || descr == ">f4") out.item = 4;
  else throw bad("dtype '" + descr + "' is not supported (float64 or float32 only)");
  out.big_endian = descr.front() == '>';
}

void NpyParser::shape(const std::string& text, NpyLayout& out) const {
  // (found by fuzzing: an empty shape value threw std::out_of_range here)
  if (text.size() < 2 || text.front() != '(' || text.back() != ')') throw bad("malformed shape '" + text + "'");
  std::vector<long long> dims;
  std::stringstream ss(text.substr(1, text.size() - 2));
  std::string tok;
  while (std::getline(ss, tok, ',')) {
    const std::size_t a = tok.find_first_not_of(' ');
    if (a == std::string::npos) continue;
    char* endp = nullptr;
    const long long v = std::strtoll(tok.c_str() + a, &endp, 10);
    if (v < 0 || (*endp != '\0' && *endp != ' ' && *endp != 'L')) throw bad("malformed shape " + text);
    dims.push_back(v);
  }
  if (dims.size() != 2) throw bad("expected a 2-D array, got shape " + text);
  if (dims[0] == 0 || dims[1] == 0) throw bad("the array is empty, shape " + text);
  out.rows = dims[0];
  out.cols = dims[1];
  out.shape = text;
}

// A byte count held in a double, as text (a shape of 2^62 x 2^62 does not
// fit a long long: casting it was undefined behaviour, found by fuzzing).
std::string count_text(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.0f", x);
  return buf;
}

NpyLayout NpyParser::layout() const {
  NpyLayout out;
  const std::string head = header(out.data_start);
  dtype(value_of(head, "descr"), out);
  const std::string fo = value_of(head, "fortran_order");
  if (fo != "False" && fo != "True") throw bad("malformed fortran_order " + fo);
  out.fortran = fo == "True";
  shape(value_of(head, "shape"), out);
  const double data_bytes = static_cast<double>(out.rows) * static_cast<double>(out.cols) * static_cast<double>(out.item);
  const double have = static_cast<double>(total_ - out.data_start);
  if (have < data_bytes)
    throw bad("truncated data: shape " + out.shape + " needs " + count_text(data_bytes) + " bytes, the file holds " +
              count_text(have));
  if (have > data_bytes) throw bad(count_text(have - data_bytes) + " unexpected bytes after the data");
  return out;
}

// Element idx of the data (float64 or float32, either byte order) as a double.
double npy_element(const char* data, long long idx, const NpyLayout& l) {
  unsigned char buf[8];
  std::memcpy(buf, data + idx * static_cast<long long>(l.item), l.item);
  if (l.big_endian)
    for (std::size_t k = 0; k < l.item / 2; ++k) std::swap(buf[k], buf[l.item - 1 - k]);
  if (l.item == 8) {
    double v;
    std::memcpy(&v, buf, 8);
    return v;
  }
  float f;
  std::memcpy(&f, buf, 4);
  return f;
}

}  // namespace

MatrixXd read_npy(const std::string& path) {
  const std::string bytes = slurp(path);
  const NpyLayout l = NpyParser(path, bytes).layout();
  check_memory(8.0 * static_cast<double>(l.rows) * static_cast<double>(l.cols), path + ": the matrix");
  MatrixXd m(l.rows, l.cols);
  const char* data = bytes.data() + l.data_start;
  for (long long idx = 0; idx < l.rows * l.cols; ++idx) {
    if ((idx & ((1 << 20) - 1)) == 0) detail::throw_if_interrupted("reading a .npy file");
    const double v = npy_element(data, idx, l);
    if (!std::isfinite(v))
      throw io_error(path + ": element " + std::to_string(idx) + " is not finite (" + std::to_string(v) + ")");
    const long long i = l.fortran ? idx % l.rows : idx / l.cols;
    const long long j = l.fortran ? idx / l.rows : idx % l.cols;
    m(i, j) = v;
  }
  return m;
}

namespace {

// The header of a .npy file read without its data: the layout, checked
// against the file's size (truncation, trailing bytes) as read_npy checks it.
NpyLayout npy_layout(const std::string& path, std::ifstream& in) {
  struct stat st {};
  stat_input(path, st);
  if (!in) throw io_error(path + ": cannot open for reading (" + std::strerror(errno) + ")");
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0) throw io_error(path + ": cannot determine the file size");
  const std::size_t total = static_cast<std::size_t>(size);
  std::string prefix(std::min<std::size_t>(total, std::size_t{1} << 16), '\0');
  in.seekg(0);
  in.read(prefix.data(), static_cast<std::streamsize>(prefix.size()));
  if (!in) throw io_error(path + ": read error");
  return NpyParser(path, prefix, total).layout();
}

}  // namespace

std::pair<long long, long long> npy_shape(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  const NpyLayout l = npy_layout(path, in);
  return {l.rows, l.cols};
}

MatrixXd read_npy_rows(const std::string& path, long long first, long long count) {
  std::ifstream in(path, std::ios::binary);
  const NpyLayout l = npy_layout(path, in);
  if (first < 0 || count < 0 || first + count > l.rows)
    throw io_error(path + ": rows [" + std::to_string(first) + ", " + std::to_string(first + count) +
                   ") are outside the matrix's " + std::to_string(l.rows) + " rows");
  check_memory(8.0 * static_cast<double>(count) * static_cast<double>(l.cols), path + ": the rows read");
  MatrixXd m(count, l.cols);
  if (count == 0) return m;
  // C order: one contiguous range; Fortran order: one range per column.
  const long long runs = l.fortran ? l.cols : 1, run = l.fortran ? count : count * l.cols;
  std::string buf(static_cast<std::size_t>(run) * l.item, '\0');
  for (long long q = 0; q < runs; ++q) {
    const long long start = l.fortran ? q * l.rows + first : first * l.cols;
    in.seekg(static_cast<std::streamoff>(l.data_start + static_cast<std::size_t>(start) * l.item));
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (!in) throw io_error(path + ": read error");
    for (long long k = 0; k < run; ++k) {
      const double v = npy_element(buf.data(), k, l);
      const long long idx = start + k;
      if (!std::isfinite(v))
        throw io_error(path + ": element " + std::to_string(idx) + " is not finite (" + std::to_string(v) + ")");
      if (l.fortran) m(k, q) = v;
      else m(k / l.cols, k % l.cols) = v;
    }
  }
  return m;
}

MatrixXd read_matrix(const std::string& path) {
  return ends_with(path, ".npy") ? read_npy(path) : read_csv(path);
}

void write_matrix(const std::string& path, const MatrixXd& m) {
  if (ends_with(path, ".npy")) write_npy(path, m);
  else write_csv(path, m);
}

void write_csv(const std::string& path, const MatrixXd& m) {
  std::string out;
  char buf[40];
  for (Eigen::Index i = 0; i < m.rows(); ++i) {
    for (Eigen::Index j = 0; j < m.cols(); ++j) {
      std::snprintf(buf, sizeof buf, "%.17g", m(i, j));
      if (j) out += ',';
      out += buf;
    }
    out += '\n';
  }
  atomic_write(path, out);
}

void write_text(const std::string& path, const std::string& text) { atomic_write(path, text); }

void write_npy(const std::string& path, const MatrixXd& m) {
  std::string header = "{'descr': '<f8', 'fortran_order': False, 'shape': (" + std::to_string(m.rows()) +
                       ", " + std::to_string(m.cols()) + "), }";
  const std::size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::string out = std::string("\x93NUMPY", 6);
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>((header.size() >> 8) & 0xff);
  out += header;
  const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> rm = m;
  out.append(reinterpret_cast<const char*>(rm.data()), static_cast<std::size_t>(rm.size()) * 8);
  atomic_write(path, out);
}

}  // namespace sgdstab
