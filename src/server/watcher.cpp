#include "server/watcher.hpp"

namespace yokan {

Watcher::Watcher(std::function<void(std::function<void()>)> post, Retry retry)
    : post_(std::move(post)), retry_(std::move(retry)) {
  sweeper_ = std::thread([this] { sweep_loop(); });
}

Watcher::~Watcher() {
  cancel_all(Status::YOKAN_ERR_TIMEOUT);
  {
    std::lock_guard<std::mutex> g(m_);
    stop_ = true;
  }
  cv_.notify_all();
  if (sweeper_.joinable()) sweeper_.join();
}

void Watcher::park(std::string_view key, RequestPtr req) {
  auto deadline = Clock::time_point::max();
  if (req->timeout_ms() > 0) deadline = Clock::now() + std::chrono::milliseconds(req->timeout_ms());
  std::lock_guard<std::mutex> g(m_);
  if (stop_) {
    req->respond(Status::YOKAN_ERR_TIMEOUT);
    return;
  }
  waiting_[std::string(key)].push_back({next_id_++, std::move(req), deadline});
  count_++;
  cv_.notify_all();
}

void Watcher::notify(std::string_view key) {
  if (count_.load() == 0) return;
  std::vector<Parked> woken;
  {
    std::lock_guard<std::mutex> g(m_);
    auto it = waiting_.find(std::string(key));
    if (it == waiting_.end()) return;
    woken = std::move(it->second);
    waiting_.erase(it);
    count_ -= woken.size();
  }
  for (auto& p : woken) {
    auto* raw = p.req.release();
    // The job may run after this watcher (and its provider) is gone: it
    // carries its own copy of retry_, which holds the provider only weakly.
    post_([retry = retry_, raw] { retry(RequestPtr(raw)); });
  }
}

void Watcher::cancel_all(Status status) {
  std::unordered_map<std::string, std::vector<Parked>> all;
  {
    std::lock_guard<std::mutex> g(m_);
    all.swap(waiting_);
    count_ = 0;
  }
  for (auto& [key, list] : all)
    for (auto& p : list) p.req->respond(status);
}

void Watcher::sweep_loop() {
  std::unique_lock<std::mutex> lk(m_);
  while (!stop_) {
    // Expire deadlines and drop requests whose client is gone.
    auto now = Clock::now();
    auto next = now + std::chrono::milliseconds(200);
    std::vector<RequestPtr> expired;
    for (auto it = waiting_.begin(); it != waiting_.end();) {
      auto& list = it->second;
      for (size_t i = 0; i < list.size();) {
        if (list[i].deadline <= now || list[i].req->abandoned()) {
          expired.push_back(std::move(list[i].req));
          list.erase(list.begin() + static_cast<long>(i));
          count_--;
        } else {
          next = std::min(next, list[i].deadline);
          ++i;
        }
      }
      it = list.empty() ? waiting_.erase(it) : std::next(it);
    }
    lk.unlock();
    for (auto& req : expired) req->respond(Status::YOKAN_ERR_TIMEOUT);
    expired.clear();
    lk.lock();
    cv_.wait_until(lk, next);
  }
}

}  // namespace yokan
