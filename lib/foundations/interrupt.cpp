// Cooperative interruption (include/sgdstab/interrupt.hpp) and the registry
// of temporary files that remove_partial_files() cleans up.
#include "sgdstab/interrupt.hpp"

#include <unistd.h>

#include <atomic>
#include <cstring>

#include "foundations/interrupt_detail.hpp"

namespace sgdstab {

namespace {

// 0: none; -1: requested without a signal number; > 0: the signal.
std::atomic<int> g_request{0};
static_assert(std::atomic<int>::is_always_lock_free, "the interrupt flag must be lock-free (signal handlers)");

// Slots for the temporary files of writes in progress. A slot is claimed
// (state 1), filled, then published (state 2); the signal handler only
// reads published slots.
constexpr int kSlots = 16;
constexpr std::size_t kPathMax = 4096;
struct Slot {
  std::atomic<int> state{0};
  char path[kPathMax];
};
Slot g_slots[kSlots];

}  // namespace

void request_interrupt(int signal_number) noexcept { g_request.store(signal_number > 0 ? signal_number : -1); }

bool interrupt_requested() noexcept { return g_request.load() != 0; }

int interrupt_signal() noexcept {
  const int v = g_request.load();
  return v > 0 ? v : 0;
}

void clear_interrupt() noexcept { g_request.store(0); }

void remove_partial_files() noexcept {
  for (Slot& s : g_slots)
    if (s.state.load() == 2) ::unlink(s.path);
}

namespace detail {

void throw_if_interrupted(const char* where) {
  if (g_request.load() != 0) throw interrupted(where, interrupt_signal());
}

TempFileGuard::TempFileGuard(const std::string& path) {
  if (path.size() >= kPathMax) return;  // not registered: only the cleanup on a second signal is lost
  for (int i = 0; i < kSlots; ++i) {
    int expected = 0;
    if (g_slots[i].state.compare_exchange_strong(expected, 1)) {
      std::memcpy(g_slots[i].path, path.c_str(), path.size() + 1);
      g_slots[i].state.store(2);
      slot_ = i;
      return;
    }
  }
}

TempFileGuard::~TempFileGuard() {
  if (slot_ >= 0) g_slots[slot_].state.store(0);
}

}  // namespace detail

}  // namespace sgdstab
