// The "gdbm" backend: a GNU dbm hash file at `path` (unsorted).
//
// Acknowledged: gdbm writes the changed bucket, directory and header into the
// file (through write(2) or its shared mmap, i.e. into the OS page cache) at
// the end of every store or delete, so a write that returned is in the file
// and survives a SIGKILL of the process. With "sync" (default true) every
// write call also ends with gdbm_sync() (fsync), so it survives a machine
// crash as well; "sync": false keeps process-crash safety but not that.
//
// The destructor closes the file and deletes nothing. gdbm takes its own file
// lock; a lock file `<path>.lock` also makes a second open in the same
// process fail with a clear message.
//
// A gdbm handle is not thread-safe (even reads move its cache), so with
// use_lock=true (the default) every call holds one mutex.
//
// A full disk: after a failed write gdbm answers every later call, reads
// included, with GDBM_NEED_RECOVERY, and gdbm_recover() rebuilds the file
// into a copy, for which a full disk has no room. So writes are kept from
// filling the disk (SpaceGuard: 1 MiB plus twice the payload stays free),
// and if one fails anyway (another process filled the disk) the handle is
// reopened on the file, whose last complete write is still what it holds.
// Errors carry gdbm's words ("File write error: No space left on device").
#include <gdbm.h>

#include <cstdlib>
#include <mutex>

#include "config_reader.hpp"
#include "file_util.hpp"
#include "space_guard.hpp"

namespace yokan {
namespace {

Status map_errno(gdbm_error e) {
  switch (e) {
    case GDBM_NO_ERROR:
      return Status::YOKAN_SUCCESS;
    case GDBM_ITEM_NOT_FOUND:
      return Status::YOKAN_ERR_KEY_NOT_FOUND;
    case GDBM_MALLOC_ERROR:
      return Status::YOKAN_ERR_ALLOCATION;
    case GDBM_CANT_BE_WRITER:
    case GDBM_CANT_BE_READER:
      return Status::YOKAN_ERR_PERMISSION;
    case GDBM_MALFORMED_DATA:
      return Status::YOKAN_ERR_INVALID_ARGS;
    case GDBM_READER_CANT_STORE:
    case GDBM_READER_CANT_DELETE:
      return Status::YOKAN_ERR_OP_FORBIDDEN;
    case GDBM_BAD_MAGIC_NUMBER:
    case GDBM_BYTE_SWAPPED:
    case GDBM_BAD_FILE_OFFSET:
    case GDBM_NEED_RECOVERY:
    case GDBM_DIR_OVERFLOW:
    case GDBM_BAD_BUCKET:
    case GDBM_BAD_HEADER:
    case GDBM_BAD_AVAIL:
    case GDBM_BAD_HASH_TABLE:
    case GDBM_BAD_DIR_ENTRY:
    case GDBM_BUCKET_CACHE_CORRUPTED:
    case GDBM_BAD_HASH_ENTRY:
      return Status::YOKAN_ERR_CORRUPTION;
    default:
      return Status::YOKAN_ERR_IO;
  }
}

// gdbm rejects a null dptr even for an empty datum, so point empty spans here.
char empty_byte = 0;
datum make_datum(std::string_view s) {
  return datum{s.empty() ? &empty_byte : const_cast<char*>(s.data()), static_cast<int>(s.size())};
}

// A mutex that use_lock=false turns off.
class OptionalMutex {
 public:
  explicit OptionalMutex(bool enabled) : enabled_(enabled) {}
  void lock() {
    if (enabled_) m_.lock();
  }
  void unlock() {
    if (enabled_) m_.unlock();
  }

 private:
  bool enabled_;
  std::mutex m_;
};

class GdbmBackend final : public Backend {
 public:
  // `path` and `open_flags`: how `db` was opened (to reopen it after a failed write).
  GdbmBackend(json config, std::unique_ptr<PathLock> lock, GDBM_FILE db, bool use_lock, bool sync,
              std::string path, int open_flags)
      : config_(std::move(config)),
        lock_(std::move(lock)),
        db_(db),
        mutex_(use_lock),
        sync_(sync),
        path_(std::move(path)),
        open_flags_(open_flags),
        space_(std::filesystem::path(path_).parent_path().empty()
                   ? std::string(".")
                   : std::filesystem::path(path_).parent_path().string(),
               uint64_t(1) << 20) {}

  ~GdbmBackend() override {
    std::lock_guard<OptionalMutex> guard(mutex_);
    if (db_) gdbm_close(db_);  // writes back and closes; the file stays
  }

  BackendTraits traits() const override { return {false, true, true}; }
  json config() const override { return config_; }

  Status put(std::string_view key, std::string_view value) override {
    if (key.size() > INT32_MAX || value.size() > INT32_MAX) return Status::YOKAN_ERR_INVALID_ARGS;
    std::lock_guard<OptionalMutex> guard(mutex_);
    if (Status s = may_write(key.size() + value.size()); !ok(s)) return s;
    if (gdbm_store(db_, make_datum(key), make_datum(value), GDBM_REPLACE) != 0) return last_error();
    return after_write();
  }

  Status put_batch(
      const std::vector<std::pair<std::string_view, std::string_view>>& pairs) override {
    std::lock_guard<OptionalMutex> guard(mutex_);
    uint64_t bytes = 0;
    for (const auto& [key, value] : pairs) bytes += key.size() + value.size();
    if (Status s = may_write(bytes); !ok(s)) return s;
    for (const auto& [key, value] : pairs) {
      if (key.size() > INT32_MAX || value.size() > INT32_MAX) return Status::YOKAN_ERR_INVALID_ARGS;
      if (gdbm_store(db_, make_datum(key), make_datum(value), GDBM_REPLACE) != 0)
        return last_error();
    }
    return after_write();  // one fsync for the whole batch
  }

  Status get(std::string_view key, const ValueVisitor& visit) override {
    std::lock_guard<OptionalMutex> guard(mutex_);
    if (Status s = ensure_open(); !ok(s)) return s;
    datum v = gdbm_fetch(db_, make_datum(key));
    if (v.dptr == nullptr) return last_error();
    visit(std::string_view(v.dptr, v.dsize));
    std::free(v.dptr);
    return Status::YOKAN_SUCCESS;
  }

  Status exists(std::string_view key, bool* found) override {
    std::lock_guard<OptionalMutex> guard(mutex_);
    if (Status s = ensure_open(); !ok(s)) return s;
    *found = gdbm_exists(db_, make_datum(key)) != 0;
    gdbm_error e = gdbm_last_errno(db_);
    return *found || e == GDBM_NO_ERROR || e == GDBM_ITEM_NOT_FOUND ? Status::YOKAN_SUCCESS
                                                                    : map_errno(e);
  }

  Status erase(std::string_view key) override {
    std::lock_guard<OptionalMutex> guard(mutex_);
    if (Status s = may_write(key.size()); !ok(s)) return s;
    if (gdbm_delete(db_, make_datum(key)) != 0) {
      Status s = last_error();
      if (s != Status::YOKAN_ERR_KEY_NOT_FOUND) return s;  // erasing an absent key is fine
      return Status::YOKAN_SUCCESS;
    }
    return after_write();
  }

  Status count(uint64_t* n) override {
    std::lock_guard<OptionalMutex> guard(mutex_);
    if (Status s = ensure_open(); !ok(s)) return s;
    gdbm_count_t c = 0;
    if (gdbm_count(db_, &c) != 0) return last_error();
    *n = c;
    return Status::YOKAN_SUCCESS;
  }

  Status iterate(std::string_view, bool, bool want_values, const PairVisitor& visit) override {
    std::lock_guard<OptionalMutex> guard(mutex_);
    if (Status s = ensure_open(); !ok(s)) return s;
    datum k = gdbm_firstkey(db_);
    while (k.dptr != nullptr) {
      bool more = true;
      if (want_values) {
        datum v = gdbm_fetch(db_, k);
        if (v.dptr == nullptr) {
          std::free(k.dptr);
          return last_error();
        }
        more = visit(std::string_view(k.dptr, k.dsize), std::string_view(v.dptr, v.dsize));
        std::free(v.dptr);
      } else {
        more = visit(std::string_view(k.dptr, k.dsize), std::string_view());
      }
      if (!more) {
        std::free(k.dptr);
        return Status::YOKAN_SUCCESS;
      }
      datum next = gdbm_nextkey(db_, k);
      std::free(k.dptr);
      k = next;
    }
    gdbm_error e = gdbm_last_errno(db_);
    return e == GDBM_ITEM_NOT_FOUND ? Status::YOKAN_SUCCESS : map_errno(e);
  }

  Status flush() override {
    std::lock_guard<OptionalMutex> guard(mutex_);
    if (Status s = ensure_open(); !ok(s)) return s;
    return gdbm_sync(db_) == 0 ? Status::YOKAN_SUCCESS : last_error();
  }

 private:
  // The status of the call that just failed, with gdbm's words; reopens the
  // handle if gdbm now refuses everything until a recovery.
  Status last_error() {
    gdbm_error e = gdbm_last_errno(db_);
    if (e == GDBM_ITEM_NOT_FOUND) {
      gdbm_clear_error(db_);
      return Status::YOKAN_ERR_KEY_NOT_FOUND;  // the common case: no message to build
    }
    Status s = e == GDBM_NO_ERROR ? Status::YOKAN_ERR_IO : map_errno(e);
    std::string message = std::string("gdbm: ") + gdbm_db_strerror(db_);
    if (gdbm_needs_recovery(db_)) {
      reopen();
      if (!db_) message += "; reopening the file failed: " + reopen_error_;
    } else {
      gdbm_clear_error(db_);
    }
    return fail(s, std::move(message));
  }

  // Drops the handle (and its unwritten cache) and opens the file again.
  void reopen() {
    gdbm_close(db_);
    db_ = gdbm_open(path_.c_str(), 0, open_flags_, 0644, nullptr);
    if (!db_) reopen_error_ = gdbm_strerror(gdbm_errno);
  }

  // Whether a write of about `payload` bytes may go to gdbm now.
  Status may_write(uint64_t payload) {
    if (Status s = ensure_open(); !ok(s)) return s;
    uint64_t free = 0;
    if (!space_.allows(payload, &free))
      return fail(Status::YOKAN_ERR_IO, SpaceGuard::refusal("gdbm", free, payload));
    return Status::YOKAN_SUCCESS;
  }

  // After a reopen that failed, tries again: an error if the file still
  // cannot be opened.
  Status ensure_open() {
    if (db_) return Status::YOKAN_SUCCESS;
    db_ = gdbm_open(path_.c_str(), 0, open_flags_, 0644, nullptr);
    if (db_) return Status::YOKAN_SUCCESS;
    return fail(Status::YOKAN_ERR_IO,
                "gdbm: the file could not be reopened after a failed write: " +
                    std::string(gdbm_strerror(gdbm_errno)));
  }

  Status after_write() {
    if (sync_ && gdbm_sync(db_) != 0) return last_error();
    return Status::YOKAN_SUCCESS;
  }

  json config_;
  std::unique_ptr<PathLock> lock_;
  GDBM_FILE db_;
  OptionalMutex mutex_;
  bool sync_;
  const std::string path_;
  const int open_flags_;
  SpaceGuard space_;
  std::string reopen_error_;
};

Status open_gdbm(const json& config, std::unique_ptr<Backend>* out, std::string* error) {
  std::string path;
  bool use_lock = true, sync = true;
  json completed;
  Status st = with_config_errors(error, [&] {
    ConfigReader r(config, "gdbm config");
    path = r.require_string("path");
    if (path.empty()) throw ConfigError("gdbm config: \"path\" must not be empty");
    use_lock = r.get_bool("use_lock", true);
    sync = r.get_bool("sync", true);
    completed = r.finish();
    return Status::YOKAN_SUCCESS;
  });
  if (!ok(st)) return st;

  st = make_parent_directories(path, error);
  if (!ok(st)) return st;
  std::unique_ptr<PathLock> lock;
  st = PathLock::acquire(path + ".lock", path, true, &lock, error);
  if (!ok(st)) return st;

  const int open_flags = GDBM_WRCREAT | GDBM_CLOEXEC;
  GDBM_FILE db = gdbm_open(path.c_str(), 0, open_flags, 0644, nullptr);
  if (db == nullptr) {
    gdbm_error e = gdbm_errno;
    if (e == GDBM_CANT_BE_WRITER) {
      if (error) *error = already_open_message(path);
      return Status::YOKAN_ERR_PERMISSION;
    }
    if (error) *error = "gdbm: cannot open \"" + path + "\": " + gdbm_strerror(e);
    return map_errno(e);
  }
  *out = std::make_unique<GdbmBackend>(std::move(completed), std::move(lock), db, use_lock, sync,
                                       path, open_flags);
  return Status::YOKAN_SUCCESS;
}

}  // namespace

// Exceptions escaping the factory are mapped to statuses by the registry.
void register_backend_gdbm(std::map<std::string, BackendFactory>& r) { r["gdbm"] = open_gdbm; }

}  // namespace yokan
