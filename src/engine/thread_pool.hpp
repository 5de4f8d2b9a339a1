// A fixed pool of handler threads fed by one queue. Handlers may block (WAIT,
// disk I/O) without stalling the progress thread.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace yokan {

class ThreadPool {
 public:
  // Throws std::system_error if a thread cannot be started; the threads
  // already started are stopped first (never left joinable).
  explicit ThreadPool(size_t threads) {
    try {
      for (size_t i = 0; i < threads; ++i) {
        workers_.emplace_back([this] { run(); });
        ids_.push_back(workers_.back().get_id());
      }
    } catch (...) {
      stop();
      throw;
    }
  }
  // True on one of the pool's threads (which must not stop the pool: a
  // thread cannot join itself).
  bool runs_here() const {
    for (auto id : ids_)
      if (id == std::this_thread::get_id()) return true;
    return false;
  }
  ~ThreadPool() { stop(); }

  void post(std::function<void()> job) {
    {
      std::lock_guard<std::mutex> g(m_);
      jobs_.push_back(std::move(job));
    }
    cv_.notify_one();
  }

  // Runs the jobs already queued, then joins the threads.
  void stop() {
    {
      std::lock_guard<std::mutex> g(m_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_)
      if (t.joinable()) t.join();
    workers_.clear();
  }

 private:
  void run() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> lk(m_);
        cv_.wait(lk, [this] { return stopping_ || !jobs_.empty(); });
        if (jobs_.empty()) return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job();
    }
  }

  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> workers_;
  std::vector<std::thread::id> ids_;  // fixed at construction
  bool stopping_ = false;
};

}  // namespace yokan
