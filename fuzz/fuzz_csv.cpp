// libFuzzer target: read_csv on arbitrary bytes (docs/reliability.md).
#include "fuzz_file.hpp"
#include "sgdstab/matrix_io.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path = sgdstab::fuzz::scratch_path(".csv");
  sgdstab::fuzz::write_bytes(path, data, size);
  sgdstab::fuzz::expect_clean(path, [](const std::string& p) { (void)sgdstab::read_csv(p); });
  return 0;
}
