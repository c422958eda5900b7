#pragma once
// Scratch files for the reader tests: a self-deleting temporary directory and
// raw byte I/O (independent of the library's readers and writers).
#include <stdlib.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>

namespace testing_files {

class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "sgdstab") {
    std::string tmpl = "/tmp/" + prefix + "_XXXXXX";
    dir_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::system(("rm -rf " + dir_).c_str()); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return dir_ + "/" + name; }
  const std::string& path() const { return dir_; }

 private:
  std::string dir_;
};

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline bool exists(const std::string& path) { return std::ifstream(path).good(); }

}  // namespace testing_files
