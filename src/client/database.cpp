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

// The reply of a call that ended with `s`; throws on any failure status.
// A transport failure says which peer and what happened after the usual text.
Reply checked(Status s, Reply reply) {
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

}  // namespace

Reply Database::call(uint16_t rpc, std::string_view meta, const std::vector<Segment>& body,
                     double timeout_ms, int32_t m, const Scatter* scatter) const {
  CallOptions opts = options_for(timeout_ms, m);
  opts.scatter = scatter;
  Reply reply;
  Status s = engine_->call(endpoint_, provider_id_, rpc, meta, body, opts, &reply);
  return checked(s, std::move(reply));
}

std::unique_ptr<CallInFlight> Database::start(uint16_t rpc, std::string meta, double timeout_ms,
                                              int32_t m, const std::vector<Segment>& body) const {
  Status s = Status::YOKAN_SUCCESS;
  auto call = engine_->start_call(endpoint_, provider_id_, rpc, std::move(meta), body,
                                  options_for(timeout_ms, m), &s);
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

uint64_t Database::count(int32_t m, double timeout_ms) const {
  check_mode(m);
  WireWriter w;
  w.put<int32_t>(m);
  Reply r = call(rpc::kCount, w.str(), {}, timeout_ms, m);
  WireReader in(r.meta);
  uint64_t n = in.get<uint64_t>();
  if (!in.done()) throw Exception(Status::YOKAN_ERR_CORRUPTION, "malformed count reply");
  return n;
}

std::vector<bool> Database::exists(int32_t m, const Keys& keys, double timeout_ms) const {
  KeyRequest req(m, keys);
  if (keys.empty()) return {};
  Reply r = call(rpc::kExists, req.meta.str(), req.body.segments, timeout_ms, m);
  if (r.meta.size() != keys.size())
    throw Exception(Status::YOKAN_ERR_CORRUPTION, "malformed exists reply");
  std::vector<bool> out(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) out[i] = r.meta[i] != 0;
  return out;
}

std::vector<uint64_t> Database::length(int32_t m, const Keys& keys, double timeout_ms) const {
  KeyRequest req(m, keys);
  if (keys.empty()) return {};
  Reply r = call(rpc::kLength, req.meta.str(), req.body.segments, timeout_ms, m);
  return decode_sizes(r.meta, keys.size());
}

void Database::erase(int32_t m, const Keys& keys, double timeout_ms) const {
  KeyRequest req(m, keys);
  if (keys.empty()) return;
  call(rpc::kErase, req.meta.str(), req.body.segments, timeout_ms, m);
}

void Database::put(int32_t m, const Keys& keys, const Keys& values, double timeout_ms) const {
  if (keys.size() != values.size())
    throw Exception(Status::YOKAN_ERR_INVALID_ARGS, "keys and values differ in number");
  KeyRequest req(m, keys);
  if (keys.empty()) return;
  req.body.add_items(values, req.meta);
  call(rpc::kPut, req.meta.str(), req.body.segments, timeout_ms, m);
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
    if (!ok(s)) checked(s, std::move(r));
    if (r.status == Status::YOKAN_ERR_INVALID_PROVIDER || r.meta != "yokan")
      throw Exception(
          Status::YOKAN_ERR_INVALID_PROVIDER,
          "no Yokan provider with id " + std::to_string(provider_id) + " at " + address);
  }
  return db;
}

}  // namespace yokan
