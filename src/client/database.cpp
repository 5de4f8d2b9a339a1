// Database: the shared call path and the RPC families that fit in a few lines.
#include <algorithm>
#include <chrono>

#include "client/encode.hpp"

namespace yokan {

Database::Database(std::shared_ptr<Engine> engine, EndpointPtr endpoint, uint16_t provider_id)
    : engine_(std::move(engine)), endpoint_(std::move(endpoint)), provider_id_(provider_id) {}

namespace {

CallOptions options_for(double timeout_ms, int32_t m) {
  CallOptions opts;
  opts.timeout_ms = timeout_ms;
  opts.no_rdma = m & mode::NO_RDMA;
  return opts;
}

}  // namespace

Reply Database::checked(Status s, Reply reply) {
  if (!ok(s)) {
    if (reply.error.empty()) throw Exception(s);
    throw Exception(s, std::string(status_message(s)) + ": " + reply.error);
  }
  // A call failed in flight by the transport (its peer went away) carries
  // the engine's detail; an error reply from the provider may carry a
  // message in its meta (e.g. which filter failed).
  if (!ok(reply.status) && !reply.error.empty())
    throw Exception(reply.status, std::string(status_message(reply.status)) + ": " + reply.error);
  if (!ok(reply.status)) throw Exception(reply.status, reply.meta);
  return reply;
}

Reply Database::call(uint16_t rpc, std::string_view meta, const std::vector<Segment>& body,
                     double timeout_ms, int32_t m, const Scatter* scatter) const {
  CallOptions opts = options_for(timeout_ms, m);
  opts.scatter = scatter;
  Reply reply;
  Status s = engine_->call(endpoint_, provider_id_, rpc, meta, body, opts, &reply);
  return checked(s, std::move(reply));
}

std::unique_ptr<CallInFlight> Database::start(uint16_t rpc, std::string meta, double timeout_ms,
                                              int32_t m, const std::vector<Segment>& body,
                                              const Completion& done) const {
  Status s = Status::YOKAN_SUCCESS;
  CallOptions opts = options_for(timeout_ms, m);
  if (done.queue) opts.completion = done;
  auto call = engine_->start_call(endpoint_, provider_id_, rpc, std::move(meta), body, opts, &s);
  if (!ok(s)) throw Exception(s);
  return call;
}

Reply Database::finish(std::unique_ptr<CallInFlight> call) {
  if (!call) throw Exception(Status::YOKAN_ERR_INVALID_ARGS, "this reply was collected already");
  Reply reply;
  Status s = call->wait(&reply);
  return checked(s, std::move(reply));
}

std::string Database::address() const { return engine_->endpoint_address(endpoint_); }
std::string Database::transport_info() const { return engine_->endpoint_info(endpoint_); }

// Each RPC has one encoder (a request: meta and body) and one decoder (the
// reply to the result), shared by the blocking method (call()) and its
// two-step form (start(), Started::finish()).

namespace {
std::string count_request(int32_t m) {
  check_mode(m);
  WireWriter w;
  w.put<int32_t>(m);
  return std::move(w.str());
}
uint64_t count_reply(const Reply& r) {
  WireReader in(r.meta);
  uint64_t n = in.get<uint64_t>();
  if (!in.done()) throw Exception(Status::YOKAN_ERR_CORRUPTION, "malformed count reply");
  return n;
}
std::vector<bool> exists_reply(const Reply& r, size_t n) {
  if (r.meta.size() != n) throw Exception(Status::YOKAN_ERR_CORRUPTION, "malformed exists reply");
  std::vector<bool> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = r.meta[i] != 0;
  return out;
}
KeyRequest put_request(int32_t m, const Keys& keys, const Keys& values) {
  if (keys.size() != values.size())
    throw Exception(Status::YOKAN_ERR_INVALID_ARGS, "keys and values differ in number");
  KeyRequest req(m, keys);
  if (!keys.empty()) req.body.add_items(values, req.meta);
  return req;
}
std::string erase_range_request(int32_t m, std::string_view prefix) {
  check_mode(m);
  WireWriter w;
  w.put<int32_t>(m);
  w.bytes(prefix);
  return std::move(w.str());
}
void no_result(const Reply&) {}
}  // namespace

uint64_t Database::count(int32_t m, double timeout_ms) const {
  return count_reply(call(rpc::kCount, count_request(m), {}, timeout_ms, m));
}
Started<uint64_t> Database::count_start(int32_t m, double t, const Completion& done) const {
  return {start(rpc::kCount, count_request(m), t, m, {}, done), count_reply};
}

std::vector<bool> Database::exists(int32_t m, const Keys& keys, double timeout_ms) const {
  KeyRequest req(m, keys);
  if (keys.empty()) return {};
  return exists_reply(call(rpc::kExists, req.meta.str(), req.body.segments, timeout_ms, m),
                      keys.size());
}
Started<std::vector<bool>> Database::exists_start(int32_t m, const Keys& keys, double t,
                                                  const Completion& done) const {
  KeyRequest req(m, keys);
  const size_t n = keys.size();
  auto decode = [n](const Reply& r) { return n ? exists_reply(r, n) : std::vector<bool>{}; };
  if (keys.empty()) return {nullptr, decode};
  return {start(rpc::kExists, req.meta.str(), t, m, req.body.segments, done), decode};
}

std::vector<uint64_t> Database::length(int32_t m, const Keys& keys, double timeout_ms) const {
  KeyRequest req(m, keys);
  if (keys.empty()) return {};
  Reply r = call(rpc::kLength, req.meta.str(), req.body.segments, timeout_ms, m);
  return decode_sizes(r.meta, keys.size());
}
Started<std::vector<uint64_t>> Database::length_start(int32_t m, const Keys& keys, double t,
                                                      const Completion& done) const {
  KeyRequest req(m, keys);
  const size_t n = keys.size();
  auto decode = [n](const Reply& r) {
    return n ? decode_sizes(r.meta, n) : std::vector<uint64_t>{};
  };
  if (keys.empty()) return {nullptr, decode};
  return {start(rpc::kLength, req.meta.str(), t, m, req.body.segments, done), decode};
}

void Database::erase(int32_t m, const Keys& keys, double timeout_ms) const {
  KeyRequest req(m, keys);
  if (keys.empty()) return;
  call(rpc::kErase, req.meta.str(), req.body.segments, timeout_ms, m);
}
Started<void> Database::erase_start(int32_t m, const Keys& keys, double t,
                                    const Completion& done) const {
  KeyRequest req(m, keys);
  if (keys.empty()) return {nullptr, no_result};
  return {start(rpc::kErase, req.meta.str(), t, m, req.body.segments, done), no_result};
}

void Database::put(int32_t m, const Keys& keys, const Keys& values, double timeout_ms) const {
  KeyRequest req = put_request(m, keys, values);
  if (keys.empty()) return;
  call(rpc::kPut, req.meta.str(), req.body.segments, timeout_ms, m);
}
Started<void> Database::put_start(int32_t m, const Keys& keys, const Keys& values, double t,
                                  const Completion& done) const {
  KeyRequest req = put_request(m, keys, values);
  if (keys.empty()) return {nullptr, no_result};
  return {start(rpc::kPut, req.meta.str(), t, m, req.body.segments, done), no_result};
}

void Database::erase_range(int32_t m, std::string_view prefix, double timeout_ms) const {
  call(rpc::kEraseRange, erase_range_request(m, prefix), {}, timeout_ms, m);
}
Started<void> Database::erase_range_start(int32_t m, std::string_view prefix, double t,
                                          const Completion& done) const {
  return {start(rpc::kEraseRange, erase_range_request(m, prefix), t, m, {}, done), no_result};
}

Client::Client(std::shared_ptr<Engine> engine) : engine_(std::move(engine)) {
  if (!engine_ || engine_->finalized())
    throw Exception(Status::YOKAN_ERR_INVALID_MID, "the engine was finalized");
}

Database Client::make_database_handle(const std::string& address, uint16_t provider_id,
                                      bool check) const {
  // Bounded: lookup() by the engine's "connect_timeout_ms" (7 s by default:
  // bootstrap connect + HELLO), the identify call by what is left of 10 s.
  auto start = std::chrono::steady_clock::now();
  Database db(engine_, engine_->lookup(address), provider_id);
  if (check) {
    Reply r;
    CallOptions opts;
    double spent =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    opts.timeout_ms = std::max(1000.0, 10000.0 - spent);
    Status s = engine_->call(db.endpoint_, provider_id, rpc::kIdentify, {}, {}, opts, &r);
    if (!ok(s)) (void)Database::checked(s, std::move(r));
    if (r.status == Status::YOKAN_ERR_INVALID_PROVIDER || r.meta != "yokan")
      throw Exception(
          Status::YOKAN_ERR_INVALID_PROVIDER,
          "no Yokan provider with id " + std::to_string(provider_id) + " at " + address);
  }
  return db;
}

}  // namespace yokan
