// UcxEngine: progress. See src/engine/ucx_engine.hpp.
#include "engine/ucx_engine.hpp"

namespace yokan {

void UcxEngine::progress_loop() {
  auto spin = std::chrono::duration<double, std::micro>(spin_us_);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  epoll_ctl(ep, EPOLL_CTL_ADD, efd_, &ev);
  auto last_work = Clock::now();
  unsigned idle_spins = 0, idle_turns = 0;
  bool idle_busy = false;
  while (!stop_progress_.load(std::memory_order_acquire)) {
    // A client engine serves no requests: while a caller busy-polls the
    // worker for its reply, this thread has nothing to add but contention
    // for the CPU and the worker lock. It parks without arming the worker
    // (an armed worker makes the peer signal every message) and looks again
    // each millisecond, so a caller never pays for waking it.
    if (!listen_ && spinning_callers_.load(std::memory_order_acquire) > 0) {
      std::unique_lock<std::mutex> lk(park_mu_);
      park_cv_.wait_for(lk, std::chrono::milliseconds(1),
                        [this] { return stop_progress_.load() || spinning_callers_.load() == 0; });
      last_work = Clock::now();
      continue;
    }
    // A listening engine whose own callers busy-poll the worker: their passes
    // deliver incoming requests too (a request to an in-process provider is
    // even answered inside the caller's send). Taking the worker lock here
    // as well only makes each of them wait for it and wake us through the
    // kernel. Stay off it, without sleeping, so that requests from elsewhere
    // are still served the moment the callers stop.
    if (listen_ && spinning_callers_.load(std::memory_order_acquire) > 0) {
      if (!run_idle_tasks()) sched_yield();
      last_work = Clock::now();
      continue;
    }
    if (progress()) {
      last_work = Clock::now();
      continue;
    }
    // Idle tasks run on every turn while they have work, else on one turn
    // in 64 (asking them costs a lock and a call, paid by the next request)
    // and always before the thread goes to sleep.
    const bool spin_over = Clock::now() - last_work >= spin;
    if (idle_busy || spin_over || (++idle_turns & 63) == 0) idle_busy = run_idle_tasks();
    if (idle_busy || !spin_over) {
      if ((++idle_spins & 31) == 0) sched_yield();
      continue;
    }
    // Nothing to do for a while: arm the worker and sleep on its event fd.
    sleeping_.store(true, std::memory_order_release);
    ucs_status_t s = ucp_worker_arm(worker_);
    if (s == UCS_OK) {
      // Short naps while operations are under way, since not every transport
      // signals the event fd when one advances; long ones when idle.
      epoll_event out;
      epoll_wait(ep, &out, 1, inflight_.load(std::memory_order_acquire) > 0 ? 1 : 100);
    }
    sleeping_.store(false, std::memory_order_release);
    last_work = Clock::now();
  }
  close(ep);
}

bool UcxEngine::run_idle_tasks() {
  if (idle_count_.load(std::memory_order_acquire) == 0) return false;
  bool more = false;
  std::lock_guard<std::mutex> g(idle_mu_);
  for (auto& [token, task] : idle_tasks_) more |= task();
  return more;
}

}  // namespace yokan
