// libFuzzer target: read_npy on arbitrary bytes (docs/reliability.md).
#include "fuzz_file.hpp"
#include "sgdstab/matrix_io.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path = sgdstab::fuzz::scratch_path(".npy");
  sgdstab::fuzz::write_bytes(path, data, size);
  sgdstab::fuzz::expect_clean(path, [](const std::string& p) { (void)sgdstab::read_npy(p); });
  return 0;
}
