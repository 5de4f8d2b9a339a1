// WAIT/NOTIFY: requests waiting for keys to appear are parked here, holding
// no thread, and re-run when a write makes their key exist, when their
// deadline passes (YOKAN_ERR_TIMEOUT), when their client goes away, or when
// the provider shuts down.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "yokan/engine.hpp"

namespace yokan {

class Watcher {
 public:
  using Clock = std::chrono::steady_clock;
  // `retry` re-runs a parked request (on a handler thread, via `post`).
  using Retry = std::function<void(RequestPtr)>;

  Watcher(std::function<void(std::function<void()>)> post, Retry retry);
  ~Watcher();

  // Parks `req` until `key` is notified or the request's deadline passes.
  // The caller must re-check the key after parking (see notify()).
  void park(std::string_view key, RequestPtr req);
  // Re-runs every request parked on `key`. Cheap when nobody waits.
  void notify(std::string_view key);
  // Answers every parked request with `status` (provider shutdown).
  void cancel_all(Status status);
  size_t parked() const { return count_.load(); }

 private:
  struct Parked {
    uint64_t id;
    RequestPtr req;
    Clock::time_point deadline;  // max() = none
  };
  void sweep_loop();

  std::function<void(std::function<void()>)> post_;
  Retry retry_;
  mutable std::mutex m_;
  std::condition_variable cv_;
  std::unordered_map<std::string, std::vector<Parked>> waiting_;
  std::atomic<size_t> count_{0};
  uint64_t next_id_ = 1;
  bool stop_ = false;
  std::thread sweeper_;
};

}  // namespace yokan
