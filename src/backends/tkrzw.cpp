// The "tkrzw" backend: a Tkrzw database of `type` "tree" (file B+ tree,
// sorted), "hash" (file hash table), "tiny" (in-memory hash) or "baby"
// (in-memory B+ tree, sorted); tiny and baby are loaded from `path` at open
// and saved to it on flush, on close and (with "sync") after every write.
//
// Acknowledged: tree and hash keep changed pages / metadata in process memory,
// and tiny/baby keep everything there, so by itself a write is lost if the
// process is killed. With "sync" (default true) every write call ends with
// Synchronize(false) (tree, hash), which writes everything into the file (the
// OS page cache) and leaves the file in a cleanly-closed state, or with a save
// (tiny, baby): an acknowledged write survives a SIGKILL of the process (not a
// machine crash; flush() does a hard sync for that). A tiny/baby save rewrites
// the whole database, so each write costs O(database size): use "sync": false
// for large in-memory databases and call flush() (then only flushed data
// survives a crash).
//
// Tiny and baby are saved by this file, not by Tkrzw's own Open/Close: Tkrzw
// would write the file in place (and leaves a zero-filled, unreadable file if
// the process dies before closing), whereas here a save goes to `<path>.tmp`
// and is renamed over `path`, so a crash at any moment leaves the previous or
// the new complete file. The format is Tkrzw's flat records.
//
// The destructor closes the database (saving it) and deletes nothing. A lock
// file `<path>.lock` makes a second open of the same path fail.
//
// Sorted types use LexicalKeyComparator: bytewise, shorter key first.
#include <stdio.h>
#include <tkrzw_dbm_baby.h>
#include <tkrzw_dbm_common_impl.h>
#include <tkrzw_dbm_hash.h>
#include <tkrzw_dbm_tiny.h>
#include <tkrzw_dbm_tree.h>
#include <tkrzw_file_pos.h>
#include <tkrzw_file_std.h>

#include <atomic>
#include <cstdio>
#include <mutex>

#include "config_reader.hpp"
#include "file_util.hpp"
#include "space_guard.hpp"

namespace yokan {
namespace {

Status code_of(const tkrzw::Status& s) {
  switch (s.GetCode()) {
    case tkrzw::Status::SUCCESS:
      return Status::YOKAN_SUCCESS;
    case tkrzw::Status::NOT_FOUND_ERROR:
      return Status::YOKAN_ERR_KEY_NOT_FOUND;
    case tkrzw::Status::BROKEN_DATA_ERROR:
      return Status::YOKAN_ERR_CORRUPTION;
    case tkrzw::Status::INVALID_ARGUMENT_ERROR:
      return Status::YOKAN_ERR_INVALID_ARGS;
    case tkrzw::Status::PERMISSION_ERROR:
      return Status::YOKAN_ERR_PERMISSION;
    case tkrzw::Status::NOT_IMPLEMENTED_ERROR:
      return Status::YOKAN_ERR_OP_UNSUPPORTED;
    case tkrzw::Status::CANCELED_ERROR:
      return Status::YOKAN_ERR_CANCELED;
    case tkrzw::Status::DUPLICATION_ERROR:
      return Status::YOKAN_ERR_KEY_EXISTS;
    case tkrzw::Status::PRECONDITION_ERROR:
      return Status::YOKAN_ERR_OP_FORBIDDEN;  // e.g. writing a read-only database
    case tkrzw::Status::SYSTEM_ERROR:
    case tkrzw::Status::INFEASIBLE_ERROR:  // ENOSPC and EDQUOT among others
      return Status::YOKAN_ERR_IO;
    default:
      return Status::YOKAN_ERR_OTHER;
  }
}

// A failure keeps Tkrzw's words ("INFEASIBLE_ERROR: pwrite: no enough space")
// for the client; a missing key needs none.
Status map_status(const tkrzw::Status& s) {
  Status code = code_of(s);
  if (ok(code) || code == Status::YOKAN_ERR_KEY_NOT_FOUND) return code;
  std::string message = "tkrzw: " + tkrzw::ToString(s);
  // Tkrzw's words for ENOSPC; say it the usual way too.
  if (message.find("no enough space") != std::string::npos) message += " (No space left on device)";
  return fail(code, std::move(message));
}

class TkrzwBackend final : public Backend {
 public:
  // `memory_path` is non-empty for tiny/baby: the file this class saves to.
  // `space`: the free-space check of the file types (null for tiny/baby).
  // `tree`: a file tree, which a failed write leaves unusable for writing.
  // `read_only`: why writes are refused although `writable` ("" if they are not).
  TkrzwBackend(json config, bool sorted, bool writable, bool sync, std::unique_ptr<PathLock> lock,
               std::unique_ptr<tkrzw::DBM> db, std::string memory_path,
               std::unique_ptr<SpaceGuard> space, bool tree, std::string read_only)
      : config_(std::move(config)),
        sorted_(sorted),
        writable_(writable),
        sync_(sync && writable),
        tree_(tree),
        lock_(std::move(lock)),
        db_(std::move(db)),
        memory_path_(std::move(memory_path)),
        space_(std::move(space)),
        broken_reason_(std::move(read_only)) {
    broken_ = !broken_reason_.empty();
  }

  ~TkrzwBackend() override {
    // Writes back tree/hash, saves tiny/baby; the file stays.
    if (memory_path_.empty())
      db_->Close();
    else if (writable_)
      guard([&] { return save(false); });
    db_.reset();  // before the lock is released
  }

  BackendTraits traits() const override { return {sorted_, true, true}; }
  json config() const override { return config_; }

  Status put(std::string_view key, std::string_view value) override {
    Status st = may_write(key.size() + value.size());
    if (!ok(st)) return st;
    return check_written(guard([&] {
      tkrzw::Status s = db_->Set(key, value, true);
      return s.IsOK() ? after_write() : map_status(s);
    }));
  }

  Status put_batch(
      const std::vector<std::pair<std::string_view, std::string_view>>& pairs) override {
    return write_batch({}, pairs);
  }

  // Not atomic (see README): Tkrzw has no write batch or transaction on these
  // classes. The batch runs under one call and one sync ends it, so for tree,
  // tiny and baby (changes held in process memory until the sync or save) a
  // SIGKILL before that sync loses all of it; a kill during the sync, a hash
  // database (which writes records into the file as they come) or an error
  // half-way can leave part of it.
  Status write_batch(
      const std::vector<std::string_view>& erases,
      const std::vector<std::pair<std::string_view, std::string_view>>& puts) override {
    uint64_t bytes = 0;
    for (auto key : erases) bytes += key.size();
    for (const auto& [key, value] : puts) bytes += key.size() + value.size();
    Status st = may_write(bytes);
    if (!ok(st)) return st;
    return check_written(guard([&] {
      for (auto key : erases) {
        tkrzw::Status s = db_->Remove(key);
        if (!s.IsOK() && s != tkrzw::Status::NOT_FOUND_ERROR) return map_status(s);
      }
      for (const auto& [key, value] : puts) {
        tkrzw::Status s = db_->Set(key, value, true);
        if (!s.IsOK()) return map_status(s);
      }
      return after_write();
    }));
  }

  Status get(std::string_view key, const ValueVisitor& visit) override {
    return guard([&] {
      std::string value;
      tkrzw::Status s = db_->Get(key, &value);
      if (s.IsOK()) visit(value);
      return map_status(s);
    });
  }

  Status erase(std::string_view key) override {
    Status st = may_write(key.size());
    if (!ok(st)) return st;
    return check_written(guard([&] {
      tkrzw::Status s = db_->Remove(key);
      if (s == tkrzw::Status::NOT_FOUND_ERROR) return Status::YOKAN_SUCCESS;
      return s.IsOK() ? after_write() : map_status(s);
    }));
  }

  Status count(uint64_t* n) override {
    return guard([&] {
      int64_t c = 0;
      tkrzw::Status s = db_->Count(&c);
      if (s.IsOK()) *n = static_cast<uint64_t>(c);
      return map_status(s);
    });
  }

  Status iterate(std::string_view from, bool inclusive, bool want_values,
                 const PairVisitor& visit) override {
    return guard([&] {
      std::unique_ptr<tkrzw::DBM::Iterator> it = db_->MakeIterator();
      // Jump positions at the first key >= from on ordered databases.
      tkrzw::Status s = (sorted_ && !from.empty()) ? it->Jump(from) : it->First();
      if (!s.IsOK()) return map_status(s);
      std::string key, value;
      for (;;) {
        s = it->Get(&key, want_values ? &value : nullptr);
        if (s == tkrzw::Status::NOT_FOUND_ERROR) return Status::YOKAN_SUCCESS;  // the end
        if (!s.IsOK()) return map_status(s);
        bool skip = sorted_ && !inclusive && !from.empty() && key == from;
        if (!skip && !visit(key, want_values ? std::string_view(value) : std::string_view()))
          return Status::YOKAN_SUCCESS;
        s = it->Next();
        if (s == tkrzw::Status::NOT_FOUND_ERROR) return Status::YOKAN_SUCCESS;
        if (!s.IsOK()) return map_status(s);
      }
    });
  }

  Status flush() override {
    if (!writable_) return Status::YOKAN_SUCCESS;  // nothing to write back
    return guard(
        [&] { return memory_path_.empty() ? map_status(db_->Synchronize(true)) : save(true); });
  }

  // Loads a tiny/baby database from its file (a missing file is an empty database).
  static Status load(tkrzw::DBM* db, const std::string& path, std::string* error) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) return Status::YOKAN_SUCCESS;
    tkrzw::StdFile file;
    tkrzw::Status s = file.Open(path, false);
    if (s.IsOK()) s = tkrzw::ImportDBMFromFlatRecords(db, &file);
    file.Close();
    if (!s.IsOK() && error) *error = "tkrzw: cannot load \"" + path + "\": " + tkrzw::ToString(s);
    return map_status(s);
  }

 private:
  // Whether a write of about `payload` bytes may go to Tkrzw now.
  Status may_write(uint64_t payload) {
    if (!writable_) return Status::YOKAN_ERR_OP_FORBIDDEN;  // writable=false
    if (broken_.load(std::memory_order_acquire)) {
      std::lock_guard<std::mutex> g(broken_mutex_);
      return fail(Status::YOKAN_ERR_IO, broken_reason_);
    }
    uint64_t free = 0;
    if (space_ && !space_->allows(payload, &free))
      return fail(Status::YOKAN_ERR_IO, SpaceGuard::refusal("tkrzw", free, payload));
    return Status::YOKAN_SUCCESS;
  }

  // After a write reached Tkrzw. A file tree that failed to write may have
  // dropped a node from its cache (later reads then fail with "invalid leaf
  // node ID") or written part of a split: no more writes are let through,
  // reads go on, and a restart reopens the file as last synchronized.
  Status check_written(Status s) {
    if (ok(s) || !tree_) return s;
    std::string message = take_failure(s);
    std::lock_guard<std::mutex> g(broken_mutex_);
    if (!broken_) {
      broken_reason_ = "tkrzw: writes are refused since a write failed (" +
                       (message.empty() ? std::string(status_message(s)) : message) +
                       "); restart the provider once the disk has space";
      broken_.store(true, std::memory_order_release);
    }
    return fail(s, std::move(message));
  }

  Status after_write() {
    if (!sync_) return Status::YOKAN_SUCCESS;
    return memory_path_.empty() ? map_status(db_->Synchronize(false)) : save(false);
  }

  // Saves a tiny/baby database: write `<path>.tmp`, then rename it over `path`
  // (atomic), so the file is always a complete database. `hard` adds fsync.
  Status save(bool hard) {
    std::lock_guard<std::mutex> guard(save_mutex_);  // one writer of the .tmp file
    const std::string tmp = memory_path_ + ".tmp";
    tkrzw::StdFile file;
    tkrzw::Status s = file.Open(tmp, true, tkrzw::File::OPEN_TRUNCATE);
    if (s.IsOK()) s = tkrzw::ExportDBMToFlatRecords(db_.get(), &file);
    if (s.IsOK()) s = file.Synchronize(hard);  // at least out of the stream buffer
    tkrzw::Status c = file.Close();
    if (s.IsOK()) s = c;
    if (!s.IsOK()) return map_status(s);
    if (::rename(tmp.c_str(), memory_path_.c_str()) != 0) return Status::YOKAN_ERR_IO;
    if (hard) {  // make the rename itself durable
      std::string dir = std::filesystem::path(memory_path_).parent_path().string();
      int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (fd < 0) return Status::YOKAN_ERR_IO;
      int rc = ::fsync(fd);
      ::close(fd);
      if (rc != 0) return Status::YOKAN_ERR_IO;
    }
    return Status::YOKAN_SUCCESS;
  }

  // Tkrzw reports errors by status, but keep any exception (e.g. bad_alloc) inside.
  template <typename F>
  Status guard(F&& body) {
    try {
      return body();
    } catch (const std::bad_alloc&) {
      return Status::YOKAN_ERR_ALLOCATION;
    } catch (const std::exception&) {
      return Status::YOKAN_ERR_OTHER;
    }
  }

  json config_;
  bool sorted_, writable_, sync_, tree_;
  std::unique_ptr<PathLock> lock_;
  std::unique_ptr<tkrzw::DBM> db_;
  std::string memory_path_;
  std::mutex save_mutex_;
  std::unique_ptr<SpaceGuard> space_;
  // Set once: writes are refused from then on, for the reason below.
  std::atomic<bool> broken_{false};
  std::mutex broken_mutex_;
  std::string broken_reason_;
};

// Parameters shared by the file hash and the file tree (reference §3.2).
void read_hash_params(ConfigReader& r, tkrzw::HashDBM::TuningParameters& p) {
  using H = tkrzw::HashDBM;
  static const std::map<std::string, H::UpdateMode> update = {{"default", H::UPDATE_DEFAULT},
                                                              {"in_place", H::UPDATE_IN_PLACE},
                                                              {"appending", H::UPDATE_APPENDING}};
  static const std::map<std::string, H::RecordCRCMode> crc = {{"default", H::RECORD_CRC_DEFAULT},
                                                              {"none", H::RECORD_CRC_NONE},
                                                              {"crc8", H::RECORD_CRC_8},
                                                              {"crc16", H::RECORD_CRC_16},
                                                              {"crc32", H::RECORD_CRC_32}};
  static const std::map<std::string, H::RecordCompressionMode> comp = {
      {"default", H::RECORD_COMP_DEFAULT}, {"none", H::RECORD_COMP_NONE},
      {"zlib", H::RECORD_COMP_ZLIB},       {"zstd", H::RECORD_COMP_ZSTD},
      {"lz4", H::RECORD_COMP_LZ4},         {"lzma", H::RECORD_COMP_LZMA}};
  static const std::map<std::string, int32_t> restore = {{"default", H::RESTORE_DEFAULT},
                                                         {"sync", H::RESTORE_SYNC},
                                                         {"read_only", H::RESTORE_READ_ONLY},
                                                         {"noop", H::RESTORE_NOOP}};
  auto keys = [](const auto& m) {
    std::set<std::string> s;
    for (const auto& item : m) s.insert(item.first);
    return s;
  };
  p.update_mode = update.at(r.get_choice("update_mode", "default", keys(update)));
  p.record_crc_mode = crc.at(r.get_choice("record_crc_mode", "default", keys(crc)));
  p.record_comp_mode = comp.at(r.get_choice("record_comp_mode", "default", keys(comp)));
  p.offset_width = static_cast<int32_t>(r.get_int("offset_width", -1));
  p.align_pow = static_cast<int32_t>(r.get_int("align_pow", -1));
  p.num_buckets = r.get_int("num_buckets", -1);
  p.restore_mode = restore.at(r.get_choice("restore_mode", "default", keys(restore)));
  p.fbp_capacity = static_cast<int32_t>(r.get_int("fbp_capacity", -1));
  p.min_read_size = static_cast<int32_t>(r.get_int("min_read_size", -1));
  r.get_bool("lock_mem_buckets", false);  // recorded; this Tkrzw version has no such option
  p.cache_buckets = r.get_bool("cache_buckets", false) ? 1 : -1;
}

// The directory of a file path ("." for a bare name).
std::string make_parent(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  return dir.empty() ? "." : dir;
}

Status open_tkrzw(const json& config, std::unique_ptr<Backend>* out, std::string* error) {
  std::string type, path;
  bool writable = true, sync = true;
  tkrzw::TreeDBM::TuningParameters params;  // also a HashDBM::TuningParameters
  int64_t tiny_buckets = -1;
  json completed;
  Status st = with_config_errors(error, [&] {
    ConfigReader r(config, "tkrzw config");
    type = r.get_choice("type", "tree", {"tree", "hash", "tiny", "baby"});
    path = r.require_string("path");
    if (path.empty()) throw ConfigError("tkrzw config: \"path\" must not be empty");
    writable = r.get_bool("writable", true);
    sync = r.get_bool("sync", true);
    if (type == "tree") {
      params.max_page_size = static_cast<int32_t>(r.get_int("max_page_size", -1));
      params.max_branches = static_cast<int32_t>(r.get_int("max_branches", -1));
      params.max_cached_pages = static_cast<int32_t>(r.get_int("max_cached_pages", -1));
      // Only the lexical comparator keeps the bytewise contract of sorted backends.
      r.get_choice("key_comparator", "", {"", "lexical"});
      params.key_comparator = tkrzw::LexicalKeyComparator;
    }
    if (type == "tree" || type == "hash") read_hash_params(r, params);
    if (type == "tiny") tiny_buckets = r.get_int("num_buckets", -1);
    if (type == "baby") r.get_string("key_comparator", "");  // ignored: always lexical
    completed = r.finish();
    return Status::YOKAN_SUCCESS;
  });
  if (!ok(st)) return st;

  if (writable) {
    st = make_parent_directories(path, error);
    if (!ok(st)) return st;
  }
  // Readers share the lock, a writer excludes everyone.
  std::unique_ptr<PathLock> lock;
  st = PathLock::acquire(path + ".lock", path, writable, &lock, error);
  if (!ok(st)) return st;

  // OPEN_NO_WAIT: fail instead of blocking if another process holds Tkrzw's lock.
  const int32_t options = tkrzw::File::OPEN_NO_WAIT;
  // A file that was not closed cleanly (a crash) is restored at open into a
  // new file, which Tkrzw writes through a memory map: on a disk without room
  // for that copy the process would die of SIGBUS. Then open it read-only
  // instead (as of its last synchronization); writes wait for a restart.
  uintmax_t free_space = UINTMAX_MAX, file_size = 0;
  std::error_code ec;
  const bool on_disk = type == "tree" || type == "hash";
  if (on_disk && writable && std::filesystem::exists(path, ec)) {
    file_size = std::filesystem::file_size(path, ec);
    auto space = std::filesystem::space(make_parent(path), ec);
    if (!ec) free_space = space.available;
    const int32_t mode = params.restore_mode & 0xffff;
    if (free_space < file_size + file_size / 8 + (uintmax_t(1) << 20) &&
        (mode == tkrzw::HashDBM::RESTORE_DEFAULT || mode == tkrzw::HashDBM::RESTORE_SYNC))
      params.restore_mode = tkrzw::HashDBM::RESTORE_READ_ONLY | (params.restore_mode & ~0xffff);
  }
  std::unique_ptr<tkrzw::DBM> db;
  tkrzw::Status s;
  if (type == "tree") {
    auto tree = std::make_unique<tkrzw::TreeDBM>(std::make_unique<tkrzw::PositionalParallelFile>());
    s = tree->OpenAdvanced(path, writable, options, params);
    db = std::move(tree);
  } else if (type == "hash") {
    auto hash = std::make_unique<tkrzw::HashDBM>(std::make_unique<tkrzw::PositionalParallelFile>());
    s = hash->OpenAdvanced(path, writable, options, params);
    db = std::move(hash);
  } else {
    // In-memory types: never opened on a file by Tkrzw (see the top comment).
    if (type == "tiny")
      db = std::make_unique<tkrzw::TinyDBM>(tiny_buckets);
    else
      db = std::make_unique<tkrzw::BabyDBM>(tkrzw::LexicalKeyComparator);
    st = TkrzwBackend::load(db.get(), path, error);
    if (!ok(st)) return st;
    if (!writable && !std::filesystem::exists(path)) {
      if (error) *error = "tkrzw: \"" + path + "\" does not exist and writable is false";
      return Status::YOKAN_ERR_INVALID_CONFIG;
    }
  }
  if (!s.IsOK()) {
    if (error) *error = "tkrzw: cannot open \"" + path + "\": " + tkrzw::ToString(s);
    // A missing file opened read-only is a configuration problem.
    if (s == tkrzw::Status::NOT_FOUND_ERROR) return Status::YOKAN_ERR_INVALID_CONFIG;
    if (s == tkrzw::Status::INFEASIBLE_ERROR) return Status::YOKAN_ERR_PERMISSION;  // locked
    return map_status(s);
  }
  bool sorted = type == "tree" || type == "baby";
  bool in_memory = type == "tiny" || type == "baby";
  std::string read_only;
  if (on_disk && writable && (!db->IsWritable() || !db->IsHealthy())) {
    read_only = "tkrzw: \"" + path + "\" is open read-only: it needs restoring after a crash and " +
                "the disk has too little space for that (No space left on device: " +
                std::to_string(free_space >> 10) + " KiB free for a " +
                std::to_string(file_size >> 10) + " KiB file); restart once there is room";
    std::fprintf(stderr, "[mochi-yokan] %s\n", read_only.c_str());
  }
  std::unique_ptr<SpaceGuard> space;
  // Room for the nodes and metadata a write flushes, beyond its payload.
  if (on_disk) space = std::make_unique<SpaceGuard>(make_parent(path), uint64_t(1) << 20);
  *out = std::make_unique<TkrzwBackend>(
      std::move(completed), sorted, writable, sync, std::move(lock), std::move(db),
      in_memory ? path : std::string(), std::move(space), type == "tree", std::move(read_only));
  return Status::YOKAN_SUCCESS;
}

}  // namespace

// Exceptions escaping the factory are mapped to statuses by the registry.
void register_backend_tkrzw(std::map<std::string, BackendFactory>& r) { r["tkrzw"] = open_tkrzw; }

}  // namespace yokan
