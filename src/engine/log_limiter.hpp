// A rate limit for diagnostics that a peer can trigger at will (malformed or
// unauthenticated messages): at most `burst` lines per `window`, then one line
// saying how many were suppressed. Thread-safe; costs one mutex only on the
// (already failing) path that logs.
#pragma once

#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <mutex>

namespace yokan {

class LogLimiter {
 public:
  explicit LogLimiter(int burst = 5, std::chrono::seconds window = std::chrono::seconds(10))
      : burst_(burst), window_(window) {}

  void log(const char* fmt, ...) __attribute__((format(printf, 2, 3))) {
    std::lock_guard<std::mutex> g(m_);
    auto now = std::chrono::steady_clock::now();
    if (now - start_ >= window_) {
      if (suppressed_ > 0)
        std::fprintf(stderr, "[mochi-yokan] ... %lu similar messages suppressed\n",
                     static_cast<unsigned long>(suppressed_));
      start_ = now;
      count_ = 0;
      suppressed_ = 0;
    }
    if (count_ >= burst_) {
      ++suppressed_;
      return;
    }
    ++count_;
    va_list ap;
    va_start(ap, fmt);
    std::fputs("[mochi-yokan] ", stderr);
    std::vfprintf(stderr, fmt, ap);
    std::fputc('\n', stderr);
    va_end(ap);
  }

 private:
  std::mutex m_;
  const int burst_;
  const std::chrono::steady_clock::duration window_;
  std::chrono::steady_clock::time_point start_{};
  int count_ = 0;
  unsigned long suppressed_ = 0;
};

}  // namespace yokan
