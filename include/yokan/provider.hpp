// A Yokan provider: one database (backend) served under a provider id on an Engine.
//
// Construction throws yokan::Exception: YOKAN_ERR_INVALID_ARGS (engine not
// listening, empty config), YOKAN_ERR_INVALID_PROVIDER (id already taken on this
// engine), YOKAN_ERR_INVALID_CONFIG (malformed JSON, unknown backend, bad
// backend config; what() names the problem).
//
// Destroying a provider (or finalizing its engine) stops serving and closes the
// backend; it never deletes persistent data.
//
// Thread-safety: construction and destruction from any thread; the provider
// serves requests concurrently on the engine's handler threads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "yokan/engine.hpp"

namespace yokan {

class ProviderImpl;

class Provider {
 public:
  Provider(std::shared_ptr<Engine> engine, uint16_t provider_id, const std::string& config);
  ~Provider();
  Provider(const Provider&) = delete;
  Provider& operator=(const Provider&) = delete;

  // The complete configuration (backend defaults filled in), as JSON text.
  std::string config() const;
  uint16_t provider_id() const;

  // Snapshot, restore, migration (docs/snapshot.rst). Each may block for as
  // long as it copies data; one runs at a time per provider; requests keep
  // being served meanwhile (writers may be held back, see the docs).
  //
  // snapshot: writes DEST/yokan-snapshot.json and DEST/data/. DEST must hold
  // no snapshot yet. With `remove_source`, the database is then detached and
  // its files deleted (only after the snapshot succeeded; refused with
  // PERMISSION on a read-only provider). Throws yokan::Exception:
  // INVALID_ARGS (empty or occupied DEST), INVALID_DATABASE (no database),
  // IO (copy failed; DEST/data is removed).
  void snapshot(const std::string& dest_path, bool remove_source = false);
  // restore: copies SRC/data into `new_root` (required; absent or empty),
  // opens it and serves it, replacing the current database only once the new
  // one opened (the old one is closed, its files are left where they are).
  // `extra_config` (JSON object text, or "") is merged into the snapshot's
  // db_config, its values winning. Throws: INVALID_ARGS (no new_root, no
  // manifest, new_root not empty), INVALID_CONFIG (bad manifest or
  // extra_config), INVALID_BACKEND (type not compiled in), CORRUPTION (data
  // missing or damaged), IO. On failure the current database keeps serving.
  void restore(const std::string& src_path, const std::string& new_root,
               const std::string& extra_config = "");
  // migrate: moves the database to the provider `dest_provider_id` at
  // `dest_address`, which must have none (started with config "{}"). Writes
  // are refused with YOKAN_ERR_BUSY while it runs (reads go on); on success
  // this provider answers YOKAN_ERR_MIGRATED, naming the destination in the
  // message, and its files are deleted; on failure it serves again. The
  // destination restores into `new_root` (required for persistent backends;
  // absent or empty). Throws as restore(), plus FROM_MERCURY / TIMEOUT when
  // the destination cannot be reached or dies.
  void migrate(const std::string& dest_address, uint16_t dest_provider_id,
               const std::string& new_root = "", const std::string& extra_config = "");

 private:
  std::shared_ptr<ProviderImpl> impl_;
};

// Asks the provider `provider_id` at `address` to snapshot its database into
// `dest_path` on the provider's own file system (the admin RPC behind
// Database.snapshot and `yokan-server snapshot`). The provider refuses with
// YOKAN_ERR_PERMISSION unless its config sets "snapshot_dir" and `dest_path`
// resolves inside it (a relative path is taken relative to it). Throws
// yokan::Exception with the provider's status and message, or
// YOKAN_ERR_TIMEOUT after `timeout_ms` (<= 0: none).
void remote_snapshot(Engine& engine, const std::string& address, uint16_t provider_id,
                     const std::string& dest_path, double timeout_ms = 0);

}  // namespace yokan
