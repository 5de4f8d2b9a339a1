// RPC ids and the metadata layout of each RPC family, shared by the client
// (src/client/) and the provider's handlers (src/server/).
//
// Key batches travel as meta [mode i32][count u64][key sizes u64 x n] with the
// keys back to back in the body; each family adds its own fields after that.
#pragma once

#include <cstdint>

namespace yokan::rpc {

// 0 is unused (the engine's HELLO travels as its own active message).
enum Id : uint16_t {
  kCount = 1,
  kPut = 2,
  kGet = 3,
  kExists = 4,
  kLength = 5,
  kErase = 6,
  kIdentify = 7,
  kList = 8,
  kEraseRange = 9,
  // Document collections (src/server/documents.cpp); meta [mode][name bytes]...
  kCollCreate = 10,
  kCollDrop = 11,
  kCollInfo = 12,
  kDocStore = 13,
  kDocUpdate = 14,
  kDocLoad = 15,
  kDocLength = 16,
  kDocErase = 17,
  kDocList = 18,
  // One key's value, a byte range of it (src/server/get_range.cpp).
  kGetRange = 19,
  // Admin RPCs (src/server/snapshot.cpp, migrate.cpp), numbered apart from
  // the data RPCs.
  kSnapshot = 40,       // meta [dest path bytes] -> status, message
  kMigrateBegin = 41,   // provider to provider: meta [manifest JSON][new_root][extra_config]
  kMigrateChunk = 42,   // meta [token u64][file name][offset u64]; body: bytes
  kMigrateCommit = 43,  // meta [token u64] -> restored and serving
  kMigrateAbort = 44,   // meta [token u64]
};

// Upper bound on the number of items in one batch (protects the decoder).
constexpr uint64_t kMaxBatch = uint64_t(1) << 24;

}  // namespace yokan::rpc
