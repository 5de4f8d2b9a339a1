// CompletionQueue and calls that report to one (the asyncio client's engine
// side): one eventfd write per batch, cookies in order, calls in flight
// counted from the send to their collection, a call given up never reported
// nor waited for.
#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "yokan/engine.hpp"

namespace yokan {
namespace {

bool readable(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN);
}

TEST(CompletionQueue, OneWritePerBatchAndCookiesInOrder) {
  CompletionQueue q;
  EXPECT_FALSE(readable(q.fd(), 0));
  std::thread poster([&q] {
    for (uint64_t i = 1; i <= 100; ++i) q.post(i);
  });
  poster.join();
  ASSERT_TRUE(readable(q.fd(), 1000));
  // The eventfd counter says how many writes there were: one for the batch.
  uint64_t writes = 0;
  ASSERT_EQ(read(q.fd(), &writes, sizeof writes), static_cast<ssize_t>(sizeof writes));
  EXPECT_EQ(writes, 1u);
  auto cookies = q.take();  // (the fd is drained already: take() must not block)
  ASSERT_EQ(cookies.size(), 100u);
  for (uint64_t i = 0; i < 100; ++i) EXPECT_EQ(cookies[i], i + 1);
  EXPECT_FALSE(readable(q.fd(), 0));
  q.post(7);  // a new batch signals again
  EXPECT_TRUE(readable(q.fd(), 1000));
  EXPECT_EQ(q.take(), std::vector<uint64_t>{7});
  EXPECT_FALSE(readable(q.fd(), 0));
}

class EngineCalls : public ::testing::Test {
 protected:
  void SetUp() override {
    engine_ = Engine::create("na+sm", true);
    // Answers "pong" at once, except meta "hold", which it keeps until released.
    engine_->register_handler(1, 9, [this](RequestPtr req) {
      if (req->meta() == "hold") {
        std::lock_guard<std::mutex> g(mu_);
        held_.push_back(std::move(req));
        return;
      }
      req->respond(Status::YOKAN_SUCCESS, "pong");
    });
    ep_ = engine_->lookup(engine_->self_address());
  }
  void TearDown() override {
    {
      std::lock_guard<std::mutex> g(mu_);
      for (auto& r : held_) r->respond(Status::YOKAN_SUCCESS, "late");
      held_.clear();
    }
    engine_->finalize();
  }
  std::unique_ptr<CallInFlight> start(const std::string& meta, const Completion& done,
                                      double timeout_ms = 0) {
    CallOptions opts;
    opts.timeout_ms = timeout_ms;
    opts.completion = done;
    Status s = Status::YOKAN_SUCCESS;
    auto call = engine_->start_call(ep_, 1, 9, meta, opts, &s);
    EXPECT_EQ(s, Status::YOKAN_SUCCESS);
    return call;
  }

  std::shared_ptr<Engine> engine_;
  EndpointPtr ep_;
  std::mutex mu_;
  std::vector<RequestPtr> held_;
};

TEST_F(EngineCalls, CompletionsAreReportedAndCollectedWithoutBlocking) {
  auto q = std::make_shared<CompletionQueue>();
  std::vector<std::unique_ptr<CallInFlight>> calls;
  for (uint64_t i = 0; i < 50; ++i) calls.push_back(start("ping", {q, 100 + i}));
  EXPECT_EQ(q->in_flight(), 50u);
  EXPECT_EQ(q->peak_in_flight(), 50u);
  std::vector<uint64_t> seen;
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (seen.size() < 50 && std::chrono::steady_clock::now() < until)
    if (readable(q->fd(), 100))
      for (auto c : q->take()) seen.push_back(c);
  ASSERT_EQ(seen.size(), 50u);
  for (auto c : seen) {
    auto& call = calls[c - 100];
    ASSERT_TRUE(call->ready());
    Reply reply;
    auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(call->wait(&reply), Status::YOKAN_SUCCESS);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(100));
    EXPECT_EQ(reply.meta, "pong");
  }
  EXPECT_EQ(q->in_flight(), 0u);
}

TEST_F(EngineCalls, AGivenUpCallIsNeverReportedAndLeavesAtOnce) {
  auto q = std::make_shared<CompletionQueue>();
  auto call = start("hold", {q, 1});
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < until) {
    std::lock_guard<std::mutex> g(mu_);
    if (!held_.empty()) break;
  }
  EXPECT_FALSE(call->ready());
  auto t0 = std::chrono::steady_clock::now();
  call.reset();  // the caller was cancelled
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(100));
  EXPECT_EQ(q->in_flight(), 0u);
  {
    std::lock_guard<std::mutex> g(mu_);
    for (auto& r : held_) r->respond(Status::YOKAN_SUCCESS, "late");
    held_.clear();
  }
  // The late reply is dropped: nothing is reported.
  EXPECT_FALSE(readable(q->fd(), 300));
  // The engine still answers.
  auto again = start("ping", {q, 2});
  ASSERT_TRUE(readable(q->fd(), 5000));
  EXPECT_EQ(q->take(), std::vector<uint64_t>{2});
  Reply reply;
  EXPECT_EQ(again->wait(&reply), Status::YOKAN_SUCCESS);
}

TEST_F(EngineCalls, ExpireGivesUpAnUnansweredCallWithATimeout) {
  auto q = std::make_shared<CompletionQueue>();
  auto call = start("hold", {q, 1}, 200);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  Reply reply;
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(call->expire(&reply), Status::YOKAN_ERR_TIMEOUT);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(100));
  EXPECT_NE(reply.error.find("timed out after 200 ms"), std::string::npos) << reply.error;
  EXPECT_EQ(q->in_flight(), 0u);
  // A call answered before its deadline: expire() collects the reply.
  auto answered = start("ping", {q, 2}, 5000);
  ASSERT_TRUE(readable(q->fd(), 5000));
  q->take();
  EXPECT_EQ(answered->expire(&reply), Status::YOKAN_SUCCESS);
  EXPECT_EQ(reply.meta, "pong");
}

}  // namespace
}  // namespace yokan
