// libFuzzer target: the IDX reader on arbitrary bytes, plain and gzip
// (docs/reliability.md). The first byte picks the mode: even, the rest is
// the file as is (plain IDX, or gzip data when it starts with the gzip
// magic); odd, the rest is an IDX payload that is gzip-compressed first, so
// that the parser behind the decompressor sees structured input.
#include <zlib.h>

#include "fuzz_file.hpp"
#include "sgdstab/data.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string raw = sgdstab::fuzz::scratch_path(".idx");
  static const std::string gz = sgdstab::fuzz::scratch_path(".idx.gz");
  if (size == 0) return 0;
  const bool compress = (data[0] & 1u) != 0;
  const std::uint8_t* body = data + 1;
  const std::size_t n = size - 1;
  if (!compress) {
    sgdstab::fuzz::write_bytes(raw, body, n);
    sgdstab::fuzz::expect_clean(raw, [](const std::string& p) { (void)sgdstab::read_idx(p); });
    return 0;
  }
  gzFile f = gzopen(gz.c_str(), "wb");
  if (f == nullptr) std::abort();
  if (n > 0 && gzwrite(f, body, static_cast<unsigned>(n)) != static_cast<int>(n)) std::abort();
  gzclose(f);
  sgdstab::fuzz::expect_clean(gz, [](const std::string& p) { (void)sgdstab::read_idx(p); });
  return 0;
}
