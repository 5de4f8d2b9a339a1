// The "leveldb" backend: a LevelDB database in the directory `path`.
//
// Acknowledged = durable against a process crash: a write returns after
// LevelDB has appended it to its log file and flushed its user-space buffer to
// the OS (write(2)), even with write_options.sync=false, so a SIGKILL of the
// process loses nothing that was acknowledged. write_options.sync=true also
// fsyncs the log (survives a machine crash).
//
// The destructor closes the database and deletes nothing. LevelDB's LOCK file
// (plus its in-process lock table) makes a second open of `path` fail.
#include <leveldb/cache.h>
#include <leveldb/db.h>
#include <leveldb/options.h>
#include <leveldb/write_batch.h>

#include <filesystem>
#include <mutex>
#include <shared_mutex>

#include "config_reader.hpp"
#include "file_util.hpp"

namespace yokan {
namespace {

Status code_of(const leveldb::Status& s) {
  if (s.ok()) return Status::YOKAN_SUCCESS;
  if (s.IsNotFound()) return Status::YOKAN_ERR_KEY_NOT_FOUND;
  if (s.IsCorruption()) return Status::YOKAN_ERR_CORRUPTION;
  if (s.IsInvalidArgument()) return Status::YOKAN_ERR_INVALID_ARGS;
  if (s.IsNotSupportedError()) return Status::YOKAN_ERR_OP_UNSUPPORTED;
  if (s.IsIOError()) return Status::YOKAN_ERR_IO;
  return Status::YOKAN_ERR_OTHER;
}

// A failure keeps LevelDB's words ("IO error: ...: No space left on device")
// for the client; a missing key needs none.
Status map_status(const leveldb::Status& s) {
  Status code = code_of(s);
  if (ok(code) || code == Status::YOKAN_ERR_KEY_NOT_FOUND) return code;
  return fail(code, "leveldb: " + s.ToString());
}

leveldb::Slice slice(std::string_view s) { return leveldb::Slice(s.data(), s.size()); }
std::string_view view(const leveldb::Slice& s) { return std::string_view(s.data(), s.size()); }

class LevelDBBackend final : public Backend {
 public:
  LevelDBBackend(json config, std::string path, leveldb::Options options, leveldb::DB* db,
                 leveldb::ReadOptions ro, leveldb::WriteOptions wo)
      : config_(std::move(config)),
        path_(std::move(path)),
        options_(options),
        db_(db),
        read_options_(ro),
        write_options_(wo) {}

  ~LevelDBBackend() override { delete db_; }  // closes; the files stay

  BackendTraits traits() const override {
    BackendTraits t{true, true, true};
    t.atomic_batches = true;
    return t;
  }
  json config() const override { return config_; }

  Status put(std::string_view key, std::string_view value) override {
    return write([&] { return db_->Put(write_options_, slice(key), slice(value)); });
  }

  // One WriteBatch: atomic (a single log record, replayed whole or not at
  // all), whatever use_write_batch says.
  Status put_batch(
      const std::vector<std::pair<std::string_view, std::string_view>>& pairs) override {
    return write_batch({}, pairs);
  }

  Status write_batch(
      const std::vector<std::string_view>& erases,
      const std::vector<std::pair<std::string_view, std::string_view>>& puts) override {
    leveldb::WriteBatch batch;
    for (auto key : erases) batch.Delete(slice(key));
    for (const auto& [key, value] : puts) batch.Put(slice(key), slice(value));
    return write([&] { return db_->Write(write_options_, &batch); });
  }

  Status get(std::string_view key, const ValueVisitor& visit) override {
    std::string value;
    leveldb::Status s;
    {
      std::shared_lock<std::shared_mutex> g(mutex_);
      if (!db_) return closed();
      s = db_->Get(read_options_, slice(key), &value);
    }
    if (!s.ok()) return map_status(s);
    visit(value);
    return Status::YOKAN_SUCCESS;
  }

  Status erase(std::string_view key) override {
    return write([&] { return db_->Delete(write_options_, slice(key)); });
  }

  Status iterate(std::string_view from, bool inclusive, bool want_values,
                 const PairVisitor& visit) override {
    std::shared_lock<std::shared_mutex> g(mutex_);
    if (!db_) return closed();
    std::unique_ptr<leveldb::Iterator> it(db_->NewIterator(read_options_));
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

  // LevelDB has no explicit flush: a synced empty batch fsyncs the log, which
  // holds everything not yet in a table file.
  Status flush() override {
    leveldb::WriteOptions wo;
    wo.sync = true;
    leveldb::WriteBatch empty;
    return write([&] { return db_->Write(wo, &empty); });
  }

 private:
  Status closed() const {
    return fail(Status::YOKAN_ERR_IO,
                "leveldb: the database could not be reopened after a failed write (" + error_ +
                    "); the next write tries again");
  }

  // Writes are exclusive so that none can follow a failed one into the log
  // (see reopen()); reads share the mutex.
  template <typename F>
  Status write(F&& op) {
    std::unique_lock<std::shared_mutex> g(mutex_);
    if (broken_) {
      Status s = reopen();
      if (!ok(s)) return s;
    }
    leveldb::Status s = op();
    if (s.IsIOError()) {
      broken_ = true;
      error_ = s.ToString();
    }
    return map_status(s);
  }

  // After a failed write LevelDB must not be written again as it is: a log
  // append that failed half-way leaves a torn record, and LevelDB would
  // append the next records after it, where the next open cannot read them
  // (it drops the rest of the block); and a failed compaction makes it refuse
  // every write for good. Closing and reopening cuts the torn record off the
  // tail and starts a new log. Opening writes the logs' contents into a table
  // file, so it is only tried when the disk has room for that: otherwise the
  // open database keeps serving reads and the write is refused.
  // Called with the mutex held exclusively.
  Status reopen() {
    uint64_t needed = (1u << 20) + options_.write_buffer_size, free = 0;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(path_, ec))
      if (entry.path().extension() == ".log") needed += entry.file_size(ec);
    auto space = std::filesystem::space(path_, ec);
    if (!ec) free = space.available;
    if (ec || free < needed)
      return fail(Status::YOKAN_ERR_IO, "leveldb: writes are suspended after a failed write (" +
                                            error_ + "); " + std::to_string(free >> 10) +
                                            " KiB free, " + std::to_string(needed >> 10) +
                                            " KiB needed to resume");
    delete db_;
    db_ = nullptr;
    leveldb::Status s = leveldb::DB::Open(options_, path_, &db_);
    if (!s.ok()) {
      // Without a database even reads fail; the next call tries again.
      db_ = nullptr;
      error_ = s.ToString();
      return closed();
    }
    broken_ = false;
    return Status::YOKAN_SUCCESS;
  }

  json config_;
  const std::string path_;
  const leveldb::Options options_;
  leveldb::DB* db_;
  leveldb::ReadOptions read_options_;
  leveldb::WriteOptions write_options_;
  // Guards db_ (replaced by reopen()) and the two fields below.
  std::shared_mutex mutex_;
  bool broken_ = false;  // a write failed: reopen before the next one
  std::string error_;    // why
};

Status open_leveldb(const json& config, std::unique_ptr<Backend>* out, std::string* error) {
  leveldb::Options options;
  leveldb::ReadOptions read_options;
  leveldb::WriteOptions write_options;
  std::string path;
  json completed;
  Status st = with_config_errors(error, [&] {
    ConfigReader r(config, "leveldb config");
    path = r.require_string("path");
    if (path.empty()) throw ConfigError("leveldb config: \"path\" must not be empty");
    options.create_if_missing = r.get_bool("create_if_missing", true);
    options.error_if_exists = r.get_bool("error_if_exists", false);
    options.paranoid_checks = r.get_bool("paranoid_checks", false);
    options.write_buffer_size = r.get_uint("write_buffer_size", 4ull << 20);
    options.max_open_files = static_cast<int>(r.get_uint("max_open_files", 1000));
    options.block_size = r.get_uint("block_size", 4096);
    options.block_restart_interval = static_cast<int>(r.get_uint("block_restart_interval", 16));
    options.max_file_size = r.get_uint("max_file_size", 2ull << 20);
    options.reuse_logs = r.get_bool("reuse_logs", false);
    options.compression =
        r.get_bool("compression", true) ? leveldb::kSnappyCompression : leveldb::kNoCompression;
    r.get_bool("disable_doc_mutex", false);  // recorded; no document mixin lock here
    ConfigReader rr = r.sub("read_options");
    read_options.verify_checksums = rr.get_bool("verify_checksums", false);
    read_options.fill_cache = rr.get_bool("fill_cache", true);
    r.put("read_options", rr.finish());
    ConfigReader wr = r.sub("write_options");
    write_options.sync = wr.get_bool("sync", false);
    wr.get_bool("use_write_batch", false);  // recorded; put_batch always uses a WriteBatch
    r.put("write_options", wr.finish());
    completed = r.finish();
    return Status::YOKAN_SUCCESS;
  });
  if (!ok(st)) return st;

  if (options.create_if_missing) {
    st = make_directories(path, error);
    if (!ok(st)) return st;
  }
  leveldb::DB* db = nullptr;
  leveldb::Status s = leveldb::DB::Open(options, path, &db);
  if (!s.ok()) {
    bool locked = s.IsIOError() && s.ToString().find("lock") != std::string::npos;
    if (error) *error = locked ? already_open_message(path) : "leveldb: " + s.ToString();
    if (locked) return Status::YOKAN_ERR_PERMISSION;
    if (s.IsInvalidArgument()) return Status::YOKAN_ERR_INVALID_CONFIG;  // e.g. missing db
    return map_status(s);
  }
  *out = std::make_unique<LevelDBBackend>(std::move(completed), path, options, db, read_options,
                                          write_options);
  return Status::YOKAN_SUCCESS;
}

}  // namespace

// Exceptions escaping the factory are mapped to statuses by the registry.
void register_backend_leveldb(std::map<std::string, BackendFactory>& r) {
  r["leveldb"] = open_leveldb;
}

}  // namespace yokan
