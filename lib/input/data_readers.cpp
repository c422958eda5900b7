// File readers for image data sets: IDX (Fashion-MNIST, gzip or plain) and
// CIFAR-10 binary batches (theory/data.md §4, §5, §7).
#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "foundations/check.hpp"
#include "sgdstab/data.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/memory.hpp"

namespace sgdstab {

namespace {

enum class PathKind { missing, file, directory, other };

PathKind path_kind(const std::string& path, long long* size = nullptr) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return PathKind::missing;
  if (size) *size = static_cast<long long>(st.st_size);
  if (S_ISREG(st.st_mode)) return PathKind::file;
  if (S_ISDIR(st.st_mode)) return PathKind::directory;
  return PathKind::other;
}

std::string hex2(unsigned v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02X", v & 0xffu);
  return buf;
}

// A gzip-compressed or plain file read through zlib (gzread is transparent
// for files without the gzip magic). Every zlib error becomes an io_error.
class GzFile {
 public:
  explicit GzFile(const std::string& path) : path_(path) {
    const PathKind kind = path_kind(path);
    if (kind == PathKind::directory) throw io_error(path + ": is a directory, expected a file");
    errno = 0;
    file_ = gzopen(path.c_str(), "rb");
    if (file_ == nullptr)
      throw io_error(path + ": cannot open for reading (" + (errno ? std::strerror(errno) : "out of memory") + ")");
    gzbuffer(file_, 1u << 17);
  }
  ~GzFile() {
    if (file_ != nullptr) gzclose(file_);
  }
  GzFile(const GzFile&) = delete;
  GzFile& operator=(const GzFile&) = delete;

  // Reads up to `want` bytes into dst; returns how many it read (fewer only
  // at the end of the data). Corrupt or truncated gzip data throws.
  std::size_t read(unsigned char* dst, std::size_t want) {
    std::size_t got = 0;
    while (got < want) {
      const auto chunk = static_cast<unsigned>(std::min<std::size_t>(want - got, 1u << 30));
      const int r = gzread(file_, dst + got, chunk);
      check();
      if (r <= 0) break;
      got += static_cast<std::size_t>(r);
    }
    return got;
  }

  // Counts (and discards) the remaining bytes.
  std::uint64_t skip_rest() {
    std::vector<unsigned char> buf(1u << 16);
    std::uint64_t total = 0;
    while (true) {
      const std::size_t r = read(buf.data(), buf.size());
      total += r;
      if (r < buf.size()) return total;
    }
  }

  const std::string& path() const { return path_; }

 private:
  void check() {
    int errnum = Z_OK;
    const char* msg = gzerror(file_, &errnum);
    if (errnum == Z_OK) return;
    if (errnum == Z_ERRNO) throw io_error(path_ + ": read error (" + std::strerror(errno) + ")");
    std::string why = msg ? msg : "unknown error";
    if (why.compare(0, path_.size() + 2, path_ + ": ") == 0) why.erase(0, path_.size() + 2);  // zlib prefixes the path
    throw io_error(path_ + ": corrupt or truncated gzip data (zlib: " + why + ")");
  }
  std::string path_;
  gzFile file_ = nullptr;
};

struct IdxType {
  unsigned code;
  std::size_t size;
  const char* name;
};

const IdxType* idx_type(unsigned code) {
  static const IdxType types[] = {{0x08, 1, "unsigned byte"}, {0x09, 1, "signed byte"}, {0x0B, 2, "int16"},
                                  {0x0C, 4, "int32"},         {0x0D, 4, "float32"},     {0x0E, 8, "float64"}};
  for (const IdxType& t : types)
    if (t.code == code) return &t;
  return nullptr;
}

std::string dims_text(const std::vector<std::int64_t>& dims) {
  std::string s;
  for (std::size_t k = 0; k < dims.size(); ++k) s += (k ? " x " : "") + std::to_string(dims[k]);
  return s;
}

// theory/data.md §4: the header is parsed on construction; read_data then
// reads exactly the bytes the dimensions imply and rejects trailing bytes.
class IdxReader {
 public:
  explicit IdxReader(const std::string& path) : file_(path) {
    auto bad = [&](const std::string& why) { return io_error(path + ": not a valid IDX file: " + why); };
    unsigned char head[4];
    const std::size_t got = file_.read(head, 4);
    if (got == 0) throw bad("the file is empty");
    for (std::size_t k = 0; k < std::min<std::size_t>(got, 2); ++k)
      if (head[k] != 0)
        throw bad("bad magic number: byte " + std::to_string(k + 1) + " is " + hex2(head[k]) +
                  ", an IDX file starts with two zero bytes");
    if (got < 2) throw bad("truncated header: the file ends inside the two zero bytes of the magic number");
    if (got < 3) throw bad("truncated header: the file ends before the type code (byte 3)");
    type_ = idx_type(head[2]);
    if (type_ == nullptr)
      throw bad("unknown type code " + hex2(head[2]) +
                " (expected 0x08 ubyte, 0x09 sbyte, 0x0B int16, 0x0C int32, 0x0D float32 or 0x0E float64)");
    if (got < 4) throw bad("truncated header: the file ends before the number of dimensions (byte 4)");
    const unsigned ndims = head[3];
    if (ndims == 0) throw bad("the number of dimensions (byte 4) is 0, must be >= 1");
    std::vector<unsigned char> raw(4 * ndims);
    const std::size_t have = file_.read(raw.data(), raw.size());
    if (have < raw.size())
      throw bad("truncated header: the file ends inside dimension " + std::to_string(have / 4 + 1) + " of " +
                std::to_string(ndims) + " (" + std::to_string(have) + " of " + std::to_string(raw.size()) +
                " bytes of dimensions)");
    std::uint64_t count = 1;
    for (unsigned k = 0; k < ndims; ++k) {
      const std::uint32_t u = (std::uint32_t{raw[4 * k]} << 24) | (std::uint32_t{raw[4 * k + 1]} << 16) |
                              (std::uint32_t{raw[4 * k + 2]} << 8) | std::uint32_t{raw[4 * k + 3]};
      const auto v = static_cast<std::int32_t>(u);
      if (v <= 0)
        throw bad("dimension " + std::to_string(k + 1) + " of " + std::to_string(ndims) + " is " +
                  std::to_string(v) + ", must be >= 1");
      dims_.push_back(v);
      const auto limit = static_cast<std::uint64_t>(INT64_MAX) / type_->size;
      if (count > limit / static_cast<std::uint64_t>(v))
        throw bad("the dimensions overflow a 64-bit size (" + dims_text(dims_) + (k + 1 < ndims ? " x ..." : "") +
                  " elements of " + std::to_string(type_->size) + " bytes)");
      count *= static_cast<std::uint64_t>(v);
    }
    count_ = count;
  }

  const IdxType& type() const { return *type_; }
  const std::vector<std::int64_t>& dims() const { return dims_; }
  std::uint64_t count() const { return count_; }
  std::uint64_t data_bytes() const { return count_ * type_->size; }
  const std::string& path() const { return file_.path(); }

  // Reads the data (data_bytes() bytes) into dst, then checks the file ends.
  void read_data(unsigned char* dst) { finish_data(file_.read(dst, static_cast<std::size_t>(data_bytes()))); }

  // The same into a vector that grows only as the data arrives (64 MiB at a
  // time): a gzip file whose header claims gigabytes but which holds a few
  // bytes fails as truncated without allocating what it claims (found by fuzzing).
  void read_data(std::vector<unsigned char>& dst) {
    const std::uint64_t want = data_bytes();
    constexpr std::uint64_t kChunk = std::uint64_t{1} << 26;
    dst.clear();
    std::uint64_t got = 0;
    while (got < want) {
      const std::uint64_t n = std::min(kChunk, want - got);
      dst.resize(static_cast<std::size_t>(got + n));
      const std::size_t r = file_.read(dst.data() + got, static_cast<std::size_t>(n));
      got += r;
      if (r < n) break;
    }
    finish_data(got);
  }

 private:
  void finish_data(std::uint64_t got) {
    const std::uint64_t want = data_bytes();
    if (got < want)
      throw io_error(path() + ": not a valid IDX file: truncated data: expected " + std::to_string(want) +
                     " bytes of data (" + dims_text(dims_) + " elements of " + type_->name + "), found " + std::to_string(got));
    const std::uint64_t extra = file_.skip_rest();
    if (extra > 0)
      throw io_error(path() + ": not a valid IDX file: " + std::to_string(extra) +
                     " unexpected trailing bytes after the " + std::to_string(want) + " bytes of data");
  }

  GzFile file_;
  const IdxType* type_ = nullptr;
  std::vector<std::int64_t> dims_;
  std::uint64_t count_ = 0;
};

void require_memory(const IdxReader& r, double bytes) {
  check_memory(bytes, r.path() + ": IDX array of " + dims_text(r.dims()) + " " + r.type().name);
}

template <class U>
U big_endian(const unsigned char* p) {
  U u = 0;
  for (std::size_t k = 0; k < sizeof(U); ++k) u = static_cast<U>((u << 8) | p[k]);
  return u;
}

double idx_value(const IdxType& t, const unsigned char* p) {
  switch (t.code) {
    case 0x08: return p[0];
    case 0x09: return static_cast<std::int8_t>(p[0]);
    case 0x0B: return static_cast<std::int16_t>(big_endian<std::uint16_t>(p));
    case 0x0C: return static_cast<std::int32_t>(big_endian<std::uint32_t>(p));
    case 0x0D: {
      const std::uint32_t u = big_endian<std::uint32_t>(p);
      float f;
      std::memcpy(&f, &u, 4);
      return f;
    }
    default: {
      const std::uint64_t u = big_endian<std::uint64_t>(p);
      double d;
      std::memcpy(&d, &u, 8);
      return d;
    }
  }
}

// Opens an unsigned-byte IDX file of the given rank.
void require_ubyte(const IdxReader& r, std::size_t rank, const char* what) {
  if (r.type().code != 0x08)
    throw io_error(r.path() + ": " + what + " must be unsigned bytes (IDX type 0x08), the file has type " +
                   hex2(r.type().code) + " (" + r.type().name + ")");
  if (r.dims().size() != rank)
    throw io_error(r.path() + ": " + what + " must have " + std::to_string(rank) + " dimension(s), the file has " +
                   std::to_string(r.dims().size()) + " (" + dims_text(r.dims()) + ")");
}

constexpr Index kCifarSide = 32, kCifarPixels = 3 * 32 * 32, kCifarRecord = kCifarPixels + 1;
const char* const kCifarHint =
    "download https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz, extract it and pass the "
    "cifar-10-batches-bin directory";

// theory/data.md §5: the number of records in a batch file, from its size.
Index cifar_records(const std::string& path) {
  long long size = 0;
  const PathKind kind = path_kind(path, &size);
  if (kind == PathKind::missing) throw io_error(path + ": CIFAR-10 batch file not found; " + kCifarHint);
  if (kind != PathKind::file) throw io_error(path + ": is not a regular file (expected a CIFAR-10 batch)");
  if (size == 0) throw io_error(path + ": not a CIFAR-10 batch: the file is empty");
  if (size % kCifarRecord != 0)
    throw io_error(path + ": not a CIFAR-10 batch: the size " + std::to_string(size) +
                   " bytes is not a multiple of the 3073-byte record (" + std::to_string(size / kCifarRecord) +
                   " records and " + std::to_string(size % kCifarRecord) + " bytes left over)");
  return static_cast<Index>(size / kCifarRecord);
}

// Reads `records` records of `path` into rows [offset, offset + records) of `out`.
void read_cifar_into(const std::string& path, Index records, LabeledImages& out, Index offset) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw io_error(path + ": cannot open for reading (" + std::strerror(errno) + ")");
  unsigned char label = 0;
  for (Index r = 0; r < records; ++r) {
    in.read(reinterpret_cast<char*>(&label), 1);
    in.read(reinterpret_cast<char*>(out.pixels.row(offset + r).data()), kCifarPixels);
    if (!in)
      throw io_error(path + ": read error in record " + std::to_string(r) + " (the file changed while being read?)");
    if (label > 9)
      throw io_error(path + ": not a CIFAR-10 batch: record " + std::to_string(r) + " has label " +
                     std::to_string(label) + ", expected 0..9");
    out.labels[static_cast<std::size_t>(offset + r)] = label;
  }
}

LabeledImages read_cifar_files(const std::vector<std::string>& paths) {
  std::vector<Index> records;
  Index total = 0;
  for (const std::string& p : paths) {  // every file checked before any is read
    records.push_back(cifar_records(p));
    total += records.back();
  }
  check_memory(static_cast<double>(total) * (kCifarPixels + sizeof(int)),
               "CIFAR-10: " + std::to_string(total) + " images");
  LabeledImages out;
  out.rows = out.cols = kCifarSide;
  out.channels = 3;
  out.pixels.resize(total, kCifarPixels);
  out.labels.resize(static_cast<std::size_t>(total));
  Index offset = 0;
  for (std::size_t k = 0; k < paths.size(); ++k) {
    read_cifar_into(paths[k], records[k], out, offset);
    offset += records[k];
  }
  return out;
}

std::string join_path(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

const char* const kFashionHint =
    "Fashion-MNIST not found: install the Debian package dataset-fashion-mnist or set SGDSTAB_FASHION_MNIST_DIR";

bool has_fashion_train_images(const std::string& dir) {
  return path_kind(join_path(dir, "train-images-idx3-ubyte")) == PathKind::file ||
         path_kind(join_path(dir, "train-images-idx3-ubyte.gz")) == PathKind::file;
}

}  // namespace

IdxArray read_idx(const std::string& path) {
  IdxReader r(path);
  const double bytes = static_cast<double>(r.data_bytes());
  require_memory(r, bytes + 8.0 * static_cast<double>(r.count()));
  std::vector<unsigned char> raw;
  r.read_data(raw);
  IdxArray out;
  out.dims = r.dims();
  out.values.resize(static_cast<std::size_t>(r.count()));
  const std::size_t item = r.type().size;
  for (std::size_t k = 0; k < out.values.size(); ++k) {
    const double v = idx_value(r.type(), raw.data() + k * item);
    if (!std::isfinite(v))
      throw io_error(path + ": element " + std::to_string(k) + " is not finite (" + detail::fmt(v) + ")");
    out.values[k] = v;
  }
  return out;
}

LabeledImages read_idx_images(const std::string& images_path, const std::string& labels_path) {
  IdxReader labels(labels_path);
  require_ubyte(labels, 1, "labels");
  IdxReader images(images_path);
  require_ubyte(images, 3, "images");
  const std::int64_t n = images.dims()[0];
  if (labels.dims()[0] != n)
    throw io_error(images_path + " holds " + std::to_string(n) + " images but " + labels_path + " holds " +
                   std::to_string(labels.dims()[0]) + " labels; the counts must agree");
  require_memory(images, static_cast<double>(images.data_bytes()) + (1.0 + sizeof(int)) * static_cast<double>(n));
  std::vector<unsigned char> raw_labels(static_cast<std::size_t>(n));
  labels.read_data(raw_labels.data());
  LabeledImages out;
  out.channels = 1;
  out.rows = images.dims()[1];
  out.cols = images.dims()[2];
  out.pixels.resize(n, out.rows * out.cols);
  images.read_data(out.pixels.data());
  out.labels.assign(raw_labels.begin(), raw_labels.end());
  return out;
}

LabeledImages read_cifar10_batch(const std::string& path) { return read_cifar_files({path}); }

LabeledImages read_cifar10(const std::string& directory, bool train) {
  const PathKind kind = path_kind(directory);
  if (kind != PathKind::directory)
    throw io_error(directory + ": " + (kind == PathKind::missing ? "no such directory" : "not a directory") +
                   " (CIFAR-10: " + kCifarHint + ")");
  std::vector<std::string> paths;
  if (train)
    for (int k = 1; k <= 5; ++k) paths.push_back(join_path(directory, "data_batch_" + std::to_string(k) + ".bin"));
  else
    paths.push_back(join_path(directory, "test_batch.bin"));
  return read_cifar_files(paths);
}

LabeledImages read_fashion_mnist(const std::string& directory, bool train) {
  const std::string prefix = train ? "train" : "t10k";
  auto locate = [&](const std::string& name) {
    const std::string plain = join_path(directory, name);
    if (path_kind(plain) == PathKind::file) return plain;
    if (path_kind(plain + ".gz") == PathKind::file) return plain + ".gz";
    throw io_error(plain + "(.gz): Fashion-MNIST file not found (neither plain nor gzip-compressed); " +
                   "install the Debian package dataset-fashion-mnist or point SGDSTAB_FASHION_MNIST_DIR at the data");
  };
  const std::string images_path = locate(prefix + "-images-idx3-ubyte");
  const std::string labels_path = locate(prefix + "-labels-idx1-ubyte");
  LabeledImages out = read_idx_images(images_path, labels_path);
  for (std::size_t i = 0; i < out.labels.size(); ++i)
    if (out.labels[i] > 9)
      throw io_error(labels_path + ": label " + std::to_string(i) + " is " + std::to_string(out.labels[i]) +
                     ", Fashion-MNIST labels are 0..9");
  return out;
}

std::string find_fashion_mnist_directory() {
  if (const char* env = std::getenv("SGDSTAB_FASHION_MNIST_DIR")) {
    const std::string dir = env;
    if (!has_fashion_train_images(dir))
      throw io_error(std::string(kFashionHint) + " (SGDSTAB_FASHION_MNIST_DIR = '" + dir +
                     "' holds no train-images-idx3-ubyte or train-images-idx3-ubyte.gz)");
    return dir;
  }
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen("dpkg-query -L dataset-fashion-mnist 2>/dev/null", "r"),
                                             ::pclose);
  std::string listing;
  if (pipe) {
    char buf[4096];
    std::size_t got = 0;
    while ((got = std::fread(buf, 1, sizeof buf, pipe.get())) > 0) listing.append(buf, got);
  }
  // One installed path per line; the directory of train-images-idx3-ubyte(.gz).
  std::size_t pos = 0;
  while (pos < listing.size()) {
    std::size_t end = listing.find('\n', pos);
    if (end == std::string::npos) end = listing.size();
    const std::string line = listing.substr(pos, end - pos);
    pos = end + 1;
    const std::size_t slash = line.rfind('/');
    if (slash == std::string::npos) continue;
    const std::string name = line.substr(slash + 1), dir = line.substr(0, slash);
    if ((name == "train-images-idx3-ubyte" || name == "train-images-idx3-ubyte.gz") && has_fashion_train_images(dir))
      return dir;
  }
  throw io_error(kFashionHint);
}

}  // namespace sgdstab
