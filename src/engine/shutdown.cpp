// UcxEngine: shutdown. See src/engine/ucx_engine.hpp.
#include "engine/ucx_engine.hpp"

namespace yokan {

void UcxEngine::finalize() {
  if (finalized_.exchange(true)) return;
  std::map<uint64_t, std::function<void()>> hooks;
  {
    std::lock_guard<std::mutex> g(finalize_mu_);
    hooks.swap(finalize_hooks_);
  }
  for (auto& [token, fn] : hooks) fn();
  bootstrap_.reset();
  watcher_.reset();  // closes the liveness connections: peers see us go
  {
    // ... and our own ends of the client-side ones (the watcher had dups).
    std::vector<std::shared_ptr<Endpoint>> clients;
    {
      std::lock_guard<std::mutex> g(endpoints_mu_);
      for (auto& [k, v] : lookups_) clients.push_back(v);
      for (auto& v : retired_) clients.push_back(v);
    }
    for (auto& ep : clients) {
      std::lock_guard<std::timed_mutex> g(ep->connect_mu);
      if (ep->liveness_fd >= 0) shutdown(ep->liveness_fd, SHUT_RDWR);
    }
  }
  pool_->stop();
  // Fail every call still waiting.
  std::vector<PendingCall*> waiting;
  {
    std::lock_guard<std::mutex> g(pending_mu_);
    for (auto& [seq, pc] : pending_) {
      pc->claimed = true;
      waiting.push_back(pc);
    }
    pending_.clear();
  }
  for (auto* pc : waiting) {
    pc->reply->status = Status::YOKAN_ERR_INVALID_MID;
    pc->complete_response();
  }
  { std::lock_guard<std::mutex> g(finalize_mu_); }
  finalize_cv_.notify_all();
}

void UcxEngine::teardown() {
  if (torn_down_) return;
  torn_down_ = true;
  std::vector<std::shared_ptr<Endpoint>> all;
  {
    std::lock_guard<std::mutex> g(endpoints_mu_);
    for (auto& [k, v] : lookups_) all.push_back(v);
    for (auto& [k, v] : peers_) all.push_back(v);
    for (auto& v : retired_) all.push_back(v);
    lookups_.clear();
    peers_.clear();
    retired_.clear();
  }
  // Close endpoints while the progress thread still runs, then stop it.
  watcher_.reset();  // no more liveness callbacks
  for (auto& ep : all) {
    close_endpoint(*ep);
    if (ep->liveness_fd >= 0) close(ep->liveness_fd);
    ep->liveness_fd = -1;
  }
  stop_progress_ = true;
  ucp_worker_signal(worker_);
  park_cv_.notify_all();
  if (progress_thread_.joinable()) progress_thread_.join();
  for (int i = 0; i < 100; ++i) progress();
  // Calls let go at their deadline may still have operations in UCX: give
  // them a moment. Those left are on connections to dead peers that UCX
  // (without peer-failure mode) never ends, and destroying the worker under
  // them trips UCX 1.13's assertions (registered memory still in use):
  // leave the worker be, a bounded leak against a crash.
  auto until = Clock::now() + std::chrono::milliseconds(200);
  while (orphans_.load() > 0 && Clock::now() < until) progress();
  release_held();
  if (orphans_.load() > 0) {
    std::fprintf(stderr,
                 "[mochi-yokan] %d timed-out call(s) still in UCX on dead connections at "
                 "shutdown: leaving the UCX worker to the process's exit\n",
                 orphans_.load());
    return;
  }
  ucp_worker_destroy(worker_);
  ucp_cleanup(context_);
}

}  // namespace yokan
