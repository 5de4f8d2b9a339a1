// CompletionQueue: an eventfd plus the cookies of the calls that completed,
// for event loops (the asyncio client). See include/yokan/engine.hpp.
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "yokan/engine.hpp"

namespace yokan {

CompletionQueue::CompletionQueue() {
  fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd_ < 0)
    throw Exception(Status::YOKAN_ERR_OTHER,
                    std::string("cannot create the completion eventfd: ") + std::strerror(errno));
}

CompletionQueue::~CompletionQueue() {
  if (fd_ >= 0) close(fd_);
}

void CompletionQueue::post(uint64_t cookie) {
  std::lock_guard<std::mutex> g(mu_);
  ready_.push_back(cookie);
  // One write per batch: the loop has not taken the earlier ones yet, and
  // will take this one with them.
  if (signalled_) return;
  signalled_ = true;
  const uint64_t one = 1;
  // Cannot block (EFD_NONBLOCK) nor fail short of a counter overflow, which
  // one write per take() cannot reach.
  ssize_t n = write(fd_, &one, sizeof one);
  (void)n;
}

std::vector<uint64_t> CompletionQueue::take() {
  // Drain first: a post() after the swap below writes again, one before it
  // is in the batch taken here (and its write, if any, only wakes the loop
  // once more for nothing).
  uint64_t count = 0;
  ssize_t n = read(fd_, &count, sizeof count);
  (void)n;
  std::vector<uint64_t> out;
  std::lock_guard<std::mutex> g(mu_);
  out.swap(ready_);
  signalled_ = false;
  return out;
}

void CompletionQueue::call_started() {
  size_t now = in_flight_.fetch_add(1, std::memory_order_relaxed) + 1;
  size_t peak = peak_.load(std::memory_order_relaxed);
  while (now > peak && !peak_.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}

}  // namespace yokan
