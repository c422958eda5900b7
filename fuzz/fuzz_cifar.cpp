// libFuzzer target: the CIFAR-10 binary batch reader on arbitrary bytes
// (docs/reliability.md).
#include "fuzz_file.hpp"
#include "sgdstab/data.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path = sgdstab::fuzz::scratch_path(".bin");
  sgdstab::fuzz::write_bytes(path, data, size);
  sgdstab::fuzz::expect_clean(path, [](const std::string& p) { (void)sgdstab::read_cifar10_batch(p); });
  return 0;
}
