// The "rocksdb" backend: a RocksDB database in the directory `path`.
//
// Acknowledged = durable against a process crash: put()/put_batch()/erase()
// return after RocksDB has appended the record to its write-ahead log and
// handed it to the OS (write(2)), even with write_options.sync=false, so a
// SIGKILL of the process loses nothing that was acknowledged. With
// write_options.sync=true the WAL is also fsync'ed (survives a machine crash).
// With write_options.disableWAL=true acknowledged writes live only in the
// memtable until flush() or close, and a process crash loses them.
//
// Closing (the destructor) flushes nothing away and deletes nothing; a lock
// file `yokan.lock` in the directory (and RocksDB's own LOCK) makes a second
// open of the same directory fail (also in-process).
//
// A full disk: a write that does not fit fails with YOKAN_ERR_IO and RocksDB's
// words ("No space left on device"); RocksDB then refuses writes (its
// background error) until its SstFileManager sees enough free space again -
// as much as one memtable, write_buffer_size - and resumes by itself (it polls
// every few seconds). Reads keep working throughout. Opening needs space too
// (replaying the WAL writes a table file); when the disk is too full for that,
// the database is opened read-only instead, with a line on stderr, and writes
// fail with YOKAN_ERR_IO saying why until the provider is restarted with space.
// The info log goes through TolerantLogger (rocksdb_logger.hpp): RocksDB's own
// logger aborts the process on a full disk.
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/utilities/checkpoint.h>
#include <rocksdb/write_batch.h>

#include <cstdio>

#include "config_reader.hpp"
#include "file_util.hpp"
#include "rocksdb_logger.hpp"

namespace yokan {
namespace {

Status code_of(const rocksdb::Status& s) {
  if (s.ok()) return Status::YOKAN_SUCCESS;
  if (s.IsNotFound()) return Status::YOKAN_ERR_KEY_NOT_FOUND;
  if (s.IsCorruption()) return Status::YOKAN_ERR_CORRUPTION;
  if (s.IsInvalidArgument()) return Status::YOKAN_ERR_INVALID_ARGS;
  if (s.IsNotSupported()) return Status::YOKAN_ERR_OP_UNSUPPORTED;
  if (s.IsBusy() || s.IsTryAgain()) return Status::YOKAN_ERR_BUSY;
  if (s.IsTimedOut()) return Status::YOKAN_ERR_TIMEOUT;
  if (s.IsAborted()) return Status::YOKAN_ERR_ABORTED;
  if (s.IsIOError()) return Status::YOKAN_ERR_IO;  // includes IsNoSpace()
  return Status::YOKAN_ERR_OTHER;
}

// A failure keeps RocksDB's words ("IO error: No space left on device: While
// appending to file: ...") for the client; a missing key needs none.
Status map_status(const rocksdb::Status& s) {
  Status code = code_of(s);
  if (ok(code) || code == Status::YOKAN_ERR_KEY_NOT_FOUND) return code;
  return fail(code, "rocksdb: " + s.ToString());
}

rocksdb::Slice slice(std::string_view s) { return rocksdb::Slice(s.data(), s.size()); }
std::string_view view(const rocksdb::Slice& s) { return std::string_view(s.data(), s.size()); }

class RocksDBBackend final : public Backend {
 public:
  // `read_only`: why the database could only be opened read-only ("" if writable).
  RocksDBBackend(json config, std::unique_ptr<PathLock> lock, rocksdb::DB* db,
                 rocksdb::ReadOptions ro, rocksdb::WriteOptions wo, std::string read_only)
      : config_(std::move(config)),
        lock_(std::move(lock)),
        db_(db),
        read_options_(ro),
        write_options_(wo),
        read_only_(std::move(read_only)) {}

  ~RocksDBBackend() override {
    // Close() syncs nothing away from the WAL; data stays on disk for the next open.
    db_->Close();
    delete db_;
  }

  BackendTraits traits() const override {
    BackendTraits t{true, true, true};
    t.atomic_batches = true;
    return t;
  }
  json config() const override { return config_; }

  Status put(std::string_view key, std::string_view value) override {
    if (!read_only_.empty()) return refuse_write();
    return map_status(db_->Put(write_options_, slice(key), slice(value)));
  }

  // One WriteBatch: atomic (a single WAL record, replayed whole or not at
  // all), whatever use_write_batch says.
  Status put_batch(
      const std::vector<std::pair<std::string_view, std::string_view>>& pairs) override {
    return write_batch({}, pairs);
  }

  Status write_batch(
      const std::vector<std::string_view>& erases,
      const std::vector<std::pair<std::string_view, std::string_view>>& puts) override {
    if (!read_only_.empty()) return refuse_write();
    rocksdb::WriteBatch batch;
    for (auto key : erases) {
      rocksdb::Status s = batch.Delete(slice(key));
      if (!s.ok()) return map_status(s);
    }
    for (const auto& [key, value] : puts) {
      rocksdb::Status s = batch.Put(slice(key), slice(value));
      if (!s.ok()) return map_status(s);
    }
    return map_status(db_->Write(write_options_, &batch));
  }

  Status get(std::string_view key, const ValueVisitor& visit) override {
    rocksdb::PinnableSlice value;
    rocksdb::Status s = db_->Get(read_options_, db_->DefaultColumnFamily(), slice(key), &value);
    if (!s.ok()) return map_status(s);
    visit(view(value));
    return Status::YOKAN_SUCCESS;
  }

  Status exists(std::string_view key, bool* found) override {
    // KeyMayExist is only a filter; a real Get settles it.
    std::string tmp;
    if (!db_->KeyMayExist(read_options_, slice(key), &tmp)) {
      *found = false;
      return Status::YOKAN_SUCCESS;
    }
    return Backend::exists(key, found);
  }

  Status erase(std::string_view key) override {
    if (!read_only_.empty()) return refuse_write();
    return map_status(db_->Delete(write_options_, slice(key)));
  }

  Status iterate(std::string_view from, bool inclusive, bool want_values,
                 const PairVisitor& visit) override {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read_options_));
    if (from.empty())
      it->SeekToFirst();
    else
      it->Seek(slice(from));
    if (!inclusive && !from.empty() && it->Valid() && view(it->key()) == from) it->Next();
    for (; it->Valid(); it->Next()) {
      if (!visit(view(it->key()), want_values ? view(it->value()) : std::string_view()))
        return Status::YOKAN_SUCCESS;
    }
    return map_status(it->status());
  }

  // RocksDB's checkpoint: SST files are immutable, so on the same file system
  // they are hard-linked (no copy); the rest (MANIFEST, WAL) is copied as of
  // one consistent sequence number. Writers keep going meanwhile.
  Status checkpoint(const std::string& dir, std::string* error) override {
    rocksdb::Checkpoint* raw = nullptr;
    rocksdb::Status s = rocksdb::Checkpoint::Create(db_, &raw);
    std::unique_ptr<rocksdb::Checkpoint> cp(raw);
    if (s.ok()) s = cp->CreateCheckpoint(dir);
    if (!s.ok() && error) *error = "rocksdb: checkpoint into \"" + dir + "\": " + s.ToString();
    return map_status(s);
  }

  Status flush() override {
    if (!read_only_.empty()) return Status::YOKAN_SUCCESS;  // nothing was written
    rocksdb::Status s = db_->FlushWAL(true);
    if (s.ok()) s = db_->Flush(rocksdb::FlushOptions());
    return map_status(s);
  }

 private:
  Status refuse_write() const {
    return fail(Status::YOKAN_ERR_IO,
                "rocksdb: the database is open read-only because opening it for writing failed (" +
                    read_only_ + "); restart the provider once the disk has space");
  }

  json config_;
  std::unique_ptr<PathLock> lock_;
  rocksdb::DB* db_;
  rocksdb::ReadOptions read_options_;
  rocksdb::WriteOptions write_options_;
  const std::string read_only_;
};

// Reads every documented key (reference §3.2) and applies those that map onto a
// rocksdb option field. Defaults are yokan's, not always RocksDB's own.
void read_db_options(ConfigReader& r, rocksdb::Options& o) {
#define YK_BOOL(name, def) o.name = r.get_bool(#name, def)
#define YK_UINT(name, def) o.name = static_cast<decltype(o.name)>(r.get_uint(#name, def))
#define YK_INT(name, def) o.name = static_cast<decltype(o.name)>(r.get_int(#name, def))
#define YK_STR(name, def) o.name = r.get_string(#name, def)
  YK_BOOL(create_if_missing, true);
  YK_BOOL(create_missing_column_families, true);
  YK_BOOL(error_if_exists, false);
  // true, unlike upstream: with false, RocksDB keeps appending to a WAL after a
  // failed (torn) append, and the next open drops every later acknowledged write.
  YK_BOOL(paranoid_checks, true);
  YK_BOOL(track_and_verify_wals_in_manifest, false);
  YK_UINT(write_buffer_size, 64ull << 20);
  YK_INT(max_open_files, 1000);
  YK_INT(max_file_opening_threads, 16);
  YK_UINT(max_total_wal_size, 0);
  YK_BOOL(use_fsync, false);
  YK_STR(db_log_dir, "");
  YK_STR(wal_dir, "");
  YK_UINT(delete_obsolete_files_period_micros, 6ull * 3600 * 1000000);
  YK_INT(max_background_jobs, 2);
  YK_INT(max_background_compactions, -1);
  YK_UINT(max_subcompactions, 1);
  YK_INT(max_background_flushes, -1);
  YK_UINT(max_log_file_size, 0);
  YK_UINT(log_file_time_to_roll, 0);
  YK_UINT(keep_log_file_num, 1000);
  YK_UINT(recycle_log_file_num, 0);
  YK_UINT(max_manifest_file_size, 1ull << 30);
  YK_UINT(WAL_ttl_seconds, 0);
  YK_UINT(WAL_size_limit_MB, 0);
  YK_UINT(manifest_preallocation_size, 4ull << 20);
  YK_BOOL(allow_mmap_reads, false);
  YK_BOOL(allow_mmap_writes, false);
  YK_BOOL(use_direct_reads, false);
  YK_BOOL(use_direct_io_for_flush_and_compaction, false);
  YK_BOOL(allow_fallocate, true);
  YK_BOOL(is_fd_close_on_exec, true);
  YK_UINT(stats_dump_period_sec, 600);
  YK_UINT(stats_persist_period_sec, 600);
  YK_BOOL(persist_stats_to_disk, false);
  YK_UINT(stats_history_buffer_size, 1ull << 20);
  YK_BOOL(advise_random_on_open, true);
  YK_UINT(db_write_buffer_size, 0);
  YK_UINT(compaction_readahead_size, 0);
  YK_INT(level0_file_num_compaction_trigger, 4);
  YK_UINT(max_bytes_for_level_base, 256ull << 20);
  YK_UINT(snap_refresh_nanos, 0);
  YK_BOOL(disable_auto_compactions, false);
#undef YK_BOOL
#undef YK_UINT
#undef YK_INT
#undef YK_STR
}

void read_read_options(ConfigReader& r, rocksdb::ReadOptions& o) {
  o.readahead_size = r.get_uint("readahead_size", 0);
  o.max_skippable_internal_keys = r.get_uint("max_skippable_internal_keys", 0);
  o.verify_checksums = r.get_bool("verify_checksums", false);
  o.fill_cache = r.get_bool("fill_cache", true);
  o.tailing = r.get_bool("tailing", false);
  o.total_order_seek = r.get_bool("total_order_seek", false);
  o.auto_prefix_mode = r.get_bool("auto_prefix_mode", false);
  o.prefix_same_as_start = r.get_bool("prefix_same_as_start", false);
  o.pin_data = r.get_bool("pin_data", false);
  o.background_purge_on_iterator_cleanup =
      r.get_bool("background_purge_on_iterator_cleanup", false);
  o.ignore_range_deletions = r.get_bool("ignore_range_deletions", false);
  // 0 means "no limit" in yokan's config; RocksDB's own "no limit" is the max value.
  uint64_t limit = r.get_uint("value_size_soft_limit", 0);
  if (limit > 0) o.value_size_soft_limit = limit;
}

void read_write_options(ConfigReader& r, rocksdb::WriteOptions& o) {
  o.sync = r.get_bool("sync", false);
  o.disableWAL = r.get_bool("disableWAL", false);
  o.ignore_missing_column_families = r.get_bool("ignore_missing_column_families", false);
  o.no_slowdown = r.get_bool("no_slowdown", false);
  o.low_pri = r.get_bool("low_pri", false);
  o.memtable_insert_hint_per_batch = r.get_bool("memtable_insert_hint_per_batch", false);
  r.get_bool("use_write_batch", false);  // recorded; put_batch always uses a WriteBatch
}

// db_paths: an array of {"path": string, "target_size": unsigned}.
void read_db_paths(const json& v, rocksdb::Options& o) {
  const std::string where = "rocksdb config: \"db_paths\"";
  if (!v.is_array()) throw ConfigError(where + " must be an array");
  for (const auto& item : v) {
    ConfigReader r(item, where + " entry");
    std::string path = r.require_string("path");
    uint64_t size = r.get_uint("target_size", 0);
    r.finish();
    o.db_paths.emplace_back(path, size);
  }
}

Status open_rocksdb(const json& config, std::unique_ptr<Backend>* out, std::string* error) {
  rocksdb::Options options;
  rocksdb::ReadOptions read_options;
  rocksdb::WriteOptions write_options;
  std::string path;
  json completed;
  Status st = with_config_errors(error, [&] {
    if (!config.is_object()) throw ConfigError("rocksdb config must be a JSON object");
    // db_paths is an array, which ConfigReader does not read: take it out first.
    json rest = config;
    json db_paths;
    if (rest.contains("db_paths")) {
      db_paths = rest["db_paths"];
      rest.erase("db_paths");
      read_db_paths(db_paths, options);
    }
    ConfigReader r(rest, "rocksdb config");
    path = r.require_string("path");
    if (path.empty()) throw ConfigError("rocksdb config: \"path\" must not be empty");
    read_db_options(r, options);
    ConfigReader rr = r.sub("read_options");
    read_read_options(rr, read_options);
    r.put("read_options", rr.finish());
    ConfigReader wr = r.sub("write_options");
    read_write_options(wr, write_options);
    r.put("write_options", wr.finish());
    // Optional keys without a default: only recorded when given.
    if (config.contains("logger_redirects_to_margo"))
      r.get_bool("logger_redirects_to_margo", false);  // no margo logger here
    if (config.contains("info_log_level")) {
      static const std::map<std::string, rocksdb::InfoLogLevel> levels = {
          {"debug", rocksdb::DEBUG_LEVEL}, {"info", rocksdb::INFO_LEVEL},
          {"warn", rocksdb::WARN_LEVEL},   {"error", rocksdb::ERROR_LEVEL},
          {"fatal", rocksdb::FATAL_LEVEL}, {"header", rocksdb::HEADER_LEVEL}};
      std::string level = r.get_choice("info_log_level", "info",
                                       {"debug", "info", "warn", "error", "fatal", "header"});
      options.info_log_level = levels.at(level);
    }
    completed = r.finish();
    if (!db_paths.is_null()) completed["db_paths"] = db_paths;
    return Status::YOKAN_SUCCESS;
  });
  if (!ok(st)) return st;

  if (options.create_if_missing) {
    st = make_directories(path, error);
    if (!ok(st)) return st;
  }
  std::error_code ec;
  if (!std::filesystem::is_directory(path, ec)) {
    if (error) *error = "rocksdb: \"" + path + "\" does not exist and create_if_missing is false";
    return Status::YOKAN_ERR_INVALID_CONFIG;
  }
  // Our own lock: RocksDB's LOCK is not taken by a read-only open.
  std::unique_ptr<PathLock> lock;
  st = PathLock::acquire(path + "/yokan.lock", path, true, &lock, error);
  if (!ok(st)) return st;
  const std::string log_dir = options.db_log_dir.empty() ? path : options.db_log_dir;
  st = make_directories(log_dir, error);
  if (!ok(st)) return st;
  options.info_log = std::make_shared<TolerantLogger>(log_dir, options.info_log_level);

  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, path, &db);
  std::string read_only;
  if (s.IsNoSpace()) {
    // Too full to open for writing: serve what is there, read-only.
    rocksdb::Status ro = rocksdb::DB::OpenForReadOnly(options, path, &db);
    if (ro.ok()) {
      read_only = s.ToString();
      std::fprintf(stderr, "[mochi-yokan] rocksdb: \"%s\" opened read-only: %s\n", path.c_str(),
                   read_only.c_str());
    } else {
      db = nullptr;
    }
  }
  if (!db) {
    // The LOCK file is held by another DB instance (this process or another).
    bool locked = s.IsIOError() && s.ToString().find("lock") != std::string::npos;
    if (error) *error = locked ? already_open_message(path) : "rocksdb: " + s.ToString();
    if (locked) return Status::YOKAN_ERR_PERMISSION;
    if (s.IsInvalidArgument()) return Status::YOKAN_ERR_INVALID_CONFIG;  // e.g. missing db
    return map_status(s);
  }
  *out = std::make_unique<RocksDBBackend>(std::move(completed), std::move(lock), db, read_options,
                                          write_options, std::move(read_only));
  return Status::YOKAN_SUCCESS;
}

}  // namespace

// Exceptions escaping the factory are mapped to statuses by the registry.
void register_backend_rocksdb(std::map<std::string, BackendFactory>& r) {
  r["rocksdb"] = open_rocksdb;
}

}  // namespace yokan
