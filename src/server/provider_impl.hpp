// Provider internals shared by the handler files (one file per RPC family).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/rpc.hpp"
#include "common/wire.hpp"
#include "engine/thread_pool.hpp"
#include "server/filter.hpp"
#include "server/watcher.hpp"
#include "yokan/backend.hpp"
#include "yokan/engine.hpp"

namespace yokan {

// Modes this provider implements (above the backend where needed).
constexpr int32_t kSupportedModes = mode::INCLUSIVE | mode::APPEND | mode::CONSUME | mode::WAIT |
                                    mode::NEW_ONLY | mode::EXIST_ONLY | mode::NO_PREFIX |
                                    mode::KEEP_LAST | mode::SUFFIX | mode::IGNORE_DOCS |
                                    mode::FILTER_VALUE | mode::NO_RDMA | mode::UPDATE_NEW;

// A decoded batch of keys: meta [mode][count][key sizes], keys in the body.
struct KeyBatch {
  int32_t mode = 0;
  std::vector<std::string_view> keys;
};

class ProviderImpl : public std::enable_shared_from_this<ProviderImpl> {
 public:
  ProviderImpl(std::shared_ptr<Engine> engine, uint16_t id, json config,
               std::shared_ptr<Backend> backend)
      : engine(std::move(engine)), id(id), config(std::move(config)), backend(std::move(backend)) {}

  std::shared_ptr<Engine> engine;
  uint16_t id;
  json config;  // guarded by config_mu once serving (a restore rewrites "database")
  mutable std::mutex config_mu;
  // The database. Never null: a provider without one serves a NoDatabase.
  // Replaced (restore, migration, detach) only under write_order held
  // exclusively, so code that holds write_order may use it directly (the
  // get/put paths: no cost added per request); code that does not, pins it.
  std::shared_ptr<Backend> backend;
  // Conditional operations (NEW_ONLY, EXIST_ONLY, APPEND, CONSUME) take this
  // exclusively so that their read-then-write is atomic against every other
  // write, which takes it shared. A snapshot that has to stop writers takes
  // it exclusively too: every write of every backend goes through it.
  std::shared_mutex write_order;
  // A reference to the database that stays valid across a replacement, for
  // handlers that use it without holding write_order (listings, counts...).
  std::shared_ptr<Backend> pin() {
    std::shared_lock<std::shared_mutex> g(write_order);
    return backend;
  }
  // One snapshot, restore or migration at a time.
  std::mutex admin;
  // {"snapshot_dir": DIR}: remote snapshots are allowed, inside DIR only.
  std::string snapshot_dir;

  // Snapshot, restore and migration (src/server/snapshot.cpp, migrate.cpp).
  // Each returns a status and, on failure, says why in `*error`.
  Status snapshot(const std::string& dest, bool remove_source, std::string* error);
  // `move_data`: SRC/data may be moved into new_root rather than copied (a
  // migration's received copy).
  Status restore(const std::string& src, const std::string& new_root, const std::string& extra,
                 std::string* error, bool move_data = false);
  Status migrate(const std::string& address, uint16_t dest_id, const std::string& new_root,
                 const std::string& extra, std::string* error);
  // Copies `db` (of `type`) into DIR/data and writes DIR's manifest. A backend
  // without checkpoint() is dumped, under write_order held exclusively if
  // `pause_for_dump` (false when the caller keeps writes out already).
  // `durable`: a dump is fsynced (false for a migration's temporary copy).
  Status copy_out(Backend& db, const std::string& type, const std::string& dir, bool pause_for_dump,
                  bool durable, std::string* error);
  // Puts `next` in place of the database (under write_order) and records it
  // in the config ("database" removed when `next` is a NoDatabase). Returns
  // the database it replaced.
  std::shared_ptr<Backend> install(std::shared_ptr<Backend> next, const std::string& type);
  // The type of the database ("" if none).
  std::string db_type() const;
  void handle_snapshot(RequestPtr req);
  // The destination side of a migration (src/server/migrate.cpp).
  void handle_migrate_begin(RequestPtr req);
  void handle_migrate_chunk(RequestPtr req);
  void handle_migrate_commit(RequestPtr req);
  void handle_migrate_abort(RequestPtr req);
  struct Incoming;  // a migration being received
  std::mutex incoming_mu;
  std::shared_ptr<Incoming> incoming;
  std::atomic<bool> closing{false};
  // {"read_only": true}: the write RPCs are registered as refusals (PERMISSION).
  bool read_only = false;
  uint64_t hook_token = 0;

  // Stops serving (deregisters the RPCs) and flushes the backend; idempotent.
  void shutdown();

  void register_handlers();

  // Handlers, one per RPC family (src/server/<family>.cpp).
  void handle_count(RequestPtr req);
  void handle_put(RequestPtr req);
  void handle_get(RequestPtr req);
  void handle_exists(RequestPtr req);
  void handle_length(RequestPtr req);
  void handle_erase(RequestPtr req);
  void handle_identify(RequestPtr req);
  void handle_list(RequestPtr req);
  void handle_erase_range(RequestPtr req);
  void handle_get_range(RequestPtr req);
  // Every document-collection RPC (kCollCreate ... kDocList), by req->rpc().
  void handle_documents(RequestPtr req);

  // WAIT: parks `req` on the first key of `batch` that is absent and returns
  // true (the request is re-run when the key appears); false if all exist.
  bool park_if_missing(RequestPtr& req, const KeyBatch& batch);
  // After a write: wakes the requests waiting for these keys.
  void notify(const std::vector<std::pair<std::string_view, std::string_view>>& pairs);

  std::unique_ptr<Watcher> watcher;
  std::map<uint16_t, Handler> handlers;  // by rpc id, for re-running parked requests
  LuaLimits lua_limits;
  // Runs every request that carries a Lua filter (see register_handlers).
  // Separate from the engine's handler pool and small, so that filters
  // cannot take every handler thread nor more than these cores.
  static constexpr size_t kFilterThreads = 2;
  std::unique_ptr<ThreadPool> filter_pool;

  // The work of the handlers, done under the locks (responses are sent after).
  Status apply_put(int32_t m,
                   const std::vector<std::pair<std::string_view, std::string_view>>& pairs);
  bool respond_single(RequestPtr& req, const KeyBatch& batch, uint64_t cap);
  Status read_values(const KeyBatch& batch, bool packed, const std::vector<uint64_t>& caps,
                     std::vector<uint64_t>* sizes, Buffer* body);
};

// The reply meta of a failed backend call: the backend's own explanation of
// `s` (see fail()), or empty for the fixed message of the code.
inline std::string why(Status s) { return take_failure(s); }

// Cuts the front of `body` into pieces of the given sizes (a batch's keys,
// values or documents), calling `take(i, piece)` for each in order. Returns
// how many bytes the pieces used, or SIZE_MAX if they overrun `body` or, with
// `allow_empty` false, one is empty. Callers size their output first and
// write by index from `take` (an emplace_back per piece reloads and stores the
// vector's end each time).
template <typename Take>
size_t slice_by_sizes(std::string_view body, const std::vector<uint64_t>& sizes, bool allow_empty,
                      Take take) {
  size_t offset = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const uint64_t n = sizes[i];
    if ((n == 0 && !allow_empty) || n > body.size() - offset) return SIZE_MAX;
    take(i, std::string_view(body.data() + offset, n));
    offset += n;
  }
  return offset;
}

// Reads [mode][count][key sizes] from `meta` and slices the keys out of the
// front of `body`; `consumed` receives how many body bytes the keys used.
// Fails with INVALID_ARGS on any inconsistency (or an empty key) and with
// YOKAN_ERR_MODE on mode bits this provider does not know.
Status decode_key_batch(WireReader& meta, std::string_view body, KeyBatch* batch, size_t* consumed);
// For RPCs whose meta and body hold nothing but the key batch.
Status decode_keys_only(const Request& req, KeyBatch* batch);

}  // namespace yokan
