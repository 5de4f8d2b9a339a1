// A hostile peer: its own UCX context, worker and endpoint to the server, so
// that it can send any bytes as an engine message, not only what the client
// library would send. Single-threaded: every method runs on the fuzzer thread.
#pragma once

#include <ucp/api/ucp.h>

#include <cstdint>
#include <string>
#include <unordered_set>

namespace yokan::fuzz {

class RawPeer {
 public:
  RawPeer();  // throws std::runtime_error when UCX cannot start
  ~RawPeer();
  RawPeer(const RawPeer&) = delete;
  RawPeer& operator=(const RawPeer&) = delete;

  // Learns the server's worker address through its bootstrap socket under a
  // fresh token, creates the endpoint and completes a HELLO. False (with
  // `error`) if any step fails.
  bool connect(const std::string& server_address, std::string* error);
  // Drops the endpoint and the bootstrap connection (the server then forgets
  // this peer and cancels its parked requests).
  void disconnect();

  // Sends one active message: `header` as the AM header, `data` as the body.
  // Waits (progressing) for the send to complete, at most `timeout_ms`.
  // False if UCX refused it or it did not complete in time.
  bool send(uint16_t am_id, const std::string& header, const std::string& data, uint32_t send_flags,
            int timeout_ms);
  // Sends a well-formed message with sequence number `seq` and waits for
  // its response; false after `timeout_ms`.
  bool round_trip(uint16_t am_id, const std::string& header, int timeout_ms);

  void progress();  // one pass over the worker
  uint64_t token() const { return token_; }
  const std::string& worker_address() const { return worker_address_; }
  size_t max_header() const { return max_header_; }
  uint64_t responses() const { return responses_; }
  // Responses by the RPC they answer (0..kRpcSlots-1; others in the last
  // slot), and how many of those were a success: shows which handlers the
  // mutated requests got past decoding into.
  static constexpr size_t kRpcSlots = 20;
  const uint64_t* answered() const { return answered_; }
  const uint64_t* succeeded() const { return succeeded_; }

 private:
  static ucs_status_t on_response(void* arg, const void* header, size_t header_len, void* data,
                                  size_t len, const ucp_am_recv_param_t* param);

  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  ucp_ep_h ep_ = nullptr;
  int bootstrap_fd_ = -1;
  uint64_t token_ = 0;
  std::string worker_address_;
  size_t max_header_ = 0;
  uint64_t responses_ = 0;
  uint64_t answered_[kRpcSlots] = {}, succeeded_[kRpcSlots] = {};
  std::unordered_set<uint64_t> awaited_;  // seqs round_trip() waits for
};

}  // namespace yokan::fuzz
