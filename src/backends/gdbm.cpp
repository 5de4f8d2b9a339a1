// The "gdbm" backend: a GNU dbm hash file at `path` (unsorted).
//
// Crash safety. gdbm rewrites buckets, its directory and its header in place,
// so a SIGKILL inside a store (a bucket split, say) can leave a file that
// opens but answers "corrupted" for every key. gdbm 1.21+ has crash tolerance
// (gdbm_failure_atomic), but it takes its snapshots with reflink copies, which
// only XFS and Btrfs have: on ext4 and tmpfs it fails with "Reflink failed"
// (EOPNOTSUPP; checked with gdbm 1.23). gdbm_recover() on open is no answer
// either: it drops whatever it cannot read. So this backend keeps its own
// redo journal (gdbm_journal.hpp), which works on every file system:
//
//   <path>.base     a copy of the file taken when it was consistent;
//   <path>.journal  every write call since that copy, one checksummed record
//                   per call (a whole batch is one record).
//
// A write call is appended to the journal *before* gdbm is touched and is
// acknowledged once its record is written (and fdatasync()ed with "sync",
// the default). The copy is refreshed (gdbm_sync, then copy + rename) once
// the journal outgrows max("journal_limit", size of the copy), so refreshing
// costs at most one copied byte per journalled byte, and the disk holds at
// most the file, the copy and that much journal. Opening with a non-empty
// journal means the last run stopped with writes in flight: the file is
// rebuilt from the copy and the journal replayed (puts and erases replay
// idempotently, in order). A SIGKILL at any moment therefore loses no
// acknowledged write and leaves no unreadable key. A write call whose apply
// fails is dropped from the journal and the file rebuilt the same way, so a
// batch applies whole or not at all.
//
// A full disk: after a failed write gdbm answers every later call, reads
// included, with GDBM_NEED_RECOVERY. So writes are kept from filling the disk
// (SpaceGuard: 1 MiB plus twice the payload, which covers the journal record
// and the file, stays free), a copy is refreshed only when there is room for
// it (else later), and if a write fails anyway (another process filled the
// disk) with no room to rebuild, the handle is reopened on the file, whose
// last complete write is still what it holds. Errors carry gdbm's words
// ("File write error: No space left on device").
//
// The destructor refreshes the copy, closes the file and deletes nothing.
// gdbm takes its own file lock; a lock file `<path>.lock` also makes a second
// open in the same process fail with a clear message.
//
// A gdbm handle is not thread-safe (even reads move its cache), so with
// use_lock=true (the default) every call holds one mutex.
#include <gdbm.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>

#include "config_reader.hpp"
#include "file_util.hpp"
#include "gdbm_journal.hpp"
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

using gdbm_journal::Op;

// Bytes that must stay free after a write or a copy (gdbm's own overhead).
constexpr uint64_t kReserve = uint64_t(1) << 20;

Status errno_status(int e) {
  if (e == EACCES || e == EPERM || e == EROFS) return Status::YOKAN_ERR_PERMISSION;
  return Status::YOKAN_ERR_IO;  // ENOSPC, EDQUOT, EIO, ...
}

uint64_t file_size(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

std::string parent_dir(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  return dir.empty() ? std::string(".") : dir;
}

// Whether `bytes` fit on the file system of `path` with kReserve to spare
// (true when it cannot tell: then the copy itself finds out).
bool room_for(const std::string& path, uint64_t bytes) {
  struct statvfs st {};
  if (::statvfs(parent_dir(path).c_str(), &st) != 0) return true;
  return uint64_t(st.f_bavail) * st.f_frsize >= bytes + kReserve;
}

// Applies one journalled op to the open file.
bool apply_op(GDBM_FILE db, const Op& op) {
  if (op.kind == gdbm_journal::kPut)
    return gdbm_store(db, make_datum(op.key), make_datum(op.value), GDBM_REPLACE) == 0;
  if (gdbm_delete(db, make_datum(op.key)) == 0) return true;
  if (gdbm_last_errno(db) != GDBM_ITEM_NOT_FOUND) return false;
  gdbm_clear_error(db);  // erasing an absent key is fine
  return true;
}

// The on-disk files of one database and the steps of the journal scheme.
// Every step returns false with `*error` set on failure.
struct GdbmFiles {
  std::string path;
  std::string base() const { return path + ".base"; }
  std::string journal() const { return path + ".journal"; }

  GDBM_FILE open_db(std::string* error) const {
    GDBM_FILE db = gdbm_open(path.c_str(), 0, GDBM_WRCREAT | GDBM_CLOEXEC, 0644, nullptr);
    if (db == nullptr) {
      gdbm_error e = gdbm_errno;
      *error = e == GDBM_CANT_BE_WRITER
                   ? already_open_message(path)
                   : "gdbm: cannot open \"" + path + "\": " + gdbm_strerror(e) +
                         (map_errno(e) == Status::YOKAN_ERR_CORRUPTION
                              ? " (restore it from \"" + base() + "\" or run gdbmtool recover)"
                              : "");
    }
    return db;
  }

  // The file rebuilt from the copy plus the journal, opened; nullptr on failure.
  GDBM_FILE rebuild(const gdbm_journal::Journal& log, std::string* error) const {
    if (!gdbm_journal::copy_file_atomically(base(), path)) {
      *error =
          "gdbm: cannot restore \"" + path + "\" from \"" + base() + "\": " + std::strerror(errno);
      return nullptr;
    }
    GDBM_FILE db = open_db(error);
    if (db == nullptr) return nullptr;
    if (!log.replay([db](const Op& op) { return apply_op(db, op); })) {
      *error = "gdbm: cannot replay \"" + journal() + "\" into \"" + path + "\": " +
               (gdbm_last_errno(db) != GDBM_NO_ERROR ? gdbm_db_strerror(db) : std::strerror(errno));
      gdbm_close(db);
      return nullptr;
    }
    return db;
  }

  // Makes the copy equal to the open file (synced first), if there is room.
  bool snapshot(GDBM_FILE db, std::string* error) const {
    if (!room_for(path, file_size(path))) {
      *error = "gdbm: no room to copy \"" + path + "\": " + std::strerror(ENOSPC);
      return false;
    }
    if (gdbm_sync(db) != 0) {
      *error = "gdbm: cannot sync \"" + path + "\": " + gdbm_db_strerror(db);
      gdbm_clear_error(db);
      return false;
    }
    if (!gdbm_journal::copy_file_atomically(path, base())) {
      *error = "gdbm: cannot copy \"" + path + "\" to \"" + base() + "\": " + std::strerror(errno);
      return false;
    }
    return true;
  }
};

class GdbmBackend final : public Backend {
 public:
  GdbmBackend(json config, std::unique_ptr<PathLock> lock, GdbmFiles files,
              std::unique_ptr<gdbm_journal::Journal> journal, GDBM_FILE db, bool use_lock,
              bool sync, uint64_t journal_limit)
      : config_(std::move(config)),
        lock_(std::move(lock)),
        files_(std::move(files)),
        journal_(std::move(journal)),
        db_(db),
        mutex_(use_lock),
        sync_(sync),
        journal_limit_(journal_limit),
        base_size_(file_size(files_.base())),
        space_(parent_dir(files_.path), kReserve) {}

  ~GdbmBackend() override {
    std::lock_guard<OptionalMutex> guard(mutex_);
    if (db_ == nullptr) return;
    // A clean close leaves the file consistent: refresh the copy so the next
    // open need not replay (if this fails, the next open replays instead).
    std::string ignored;
    if (!needs_rebuild_ && journal_->dirty() && files_.snapshot(db_, &ignored)) journal_->clear();
    gdbm_close(db_);  // writes back and closes; the files stay
  }

  BackendTraits traits() const override {
    BackendTraits t{false, true, true};
    // One journal record per call: replayed whole after a crash, dropped
    // whole (and the file rebuilt) when applying it fails.
    t.atomic_batches = true;
    return t;
  }
  json config() const override { return config_; }

  Status put(std::string_view key, std::string_view value) override {
    if (key.size() > INT32_MAX || value.size() > INT32_MAX) return Status::YOKAN_ERR_INVALID_ARGS;
    std::lock_guard<OptionalMutex> guard(mutex_);
    ops_.clear();
    ops_.push_back({gdbm_journal::kPut, key, value});
    return write(ops_, key.size() + value.size());
  }

  Status put_batch(
      const std::vector<std::pair<std::string_view, std::string_view>>& pairs) override {
    // Checked before anything is journalled, so an invalid item applies nothing.
    uint64_t bytes = 0;
    for (const auto& [key, value] : pairs) {
      if (key.size() > INT32_MAX || value.size() > INT32_MAX) return Status::YOKAN_ERR_INVALID_ARGS;
      bytes += key.size() + value.size();
    }
    std::lock_guard<OptionalMutex> guard(mutex_);
    ops_.clear();
    for (const auto& [key, value] : pairs) ops_.push_back({gdbm_journal::kPut, key, value});
    return write(ops_, bytes);
  }

  Status write_batch(
      const std::vector<std::string_view>& erases,
      const std::vector<std::pair<std::string_view, std::string_view>>& puts) override {
    // Checked before anything is journalled, so an invalid item applies nothing.
    uint64_t bytes = 0;
    for (std::string_view key : erases) {
      if (key.size() > INT32_MAX) return Status::YOKAN_ERR_INVALID_ARGS;
      bytes += key.size();
    }
    for (const auto& [key, value] : puts) {
      if (key.size() > INT32_MAX || value.size() > INT32_MAX) return Status::YOKAN_ERR_INVALID_ARGS;
      bytes += key.size() + value.size();
    }
    if (erases.empty() && puts.empty()) return Status::YOKAN_SUCCESS;
    std::lock_guard<OptionalMutex> guard(mutex_);
    ops_.clear();
    for (std::string_view key : erases) ops_.push_back({gdbm_journal::kErase, key, {}});
    for (const auto& [key, value] : puts) ops_.push_back({gdbm_journal::kPut, key, value});
    return write(ops_, bytes);
  }

  Status erase_batch(const std::vector<std::string_view>& keys) override {
    return write_batch(keys, {});
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
    if (key.size() > INT32_MAX) return Status::YOKAN_ERR_INVALID_ARGS;
    std::lock_guard<OptionalMutex> guard(mutex_);
    if (Status s = ensure_open(); !ok(s)) return s;
    // Erasing an absent key changes nothing: no journal record for it.
    if (!gdbm_exists(db_, make_datum(key))) {
      gdbm_error e = gdbm_last_errno(db_);
      if (e == GDBM_NO_ERROR || e == GDBM_ITEM_NOT_FOUND) return Status::YOKAN_SUCCESS;
      return last_error();
    }
    ops_.clear();
    ops_.push_back({gdbm_journal::kErase, key, {}});
    return write(ops_, key.size());
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
      reopen_in_place();
      if (!db_) message += "; reopening the file failed: " + reopen_error_;
    } else {
      gdbm_clear_error(db_);
    }
    return fail(s, std::move(message));
  }

  // Drops the handle (and its unwritten cache) and opens the file again.
  void reopen_in_place() {
    gdbm_close(db_);
    db_ = files_.open_db(&reopen_error_);
  }

  // Makes the handle usable again after a failed write (rebuilds the file
  // first if that could not be done then): an error if it still cannot.
  Status ensure_open() {
    if (db_) return Status::YOKAN_SUCCESS;
    if (needs_rebuild_) {
      db_ = files_.rebuild(*journal_, &reopen_error_);
      if (db_) needs_rebuild_ = false;
    } else {
      db_ = files_.open_db(&reopen_error_);
    }
    if (db_) return Status::YOKAN_SUCCESS;
    return fail(Status::YOKAN_ERR_IO,
                "gdbm: the file could not be reopened after a failed write: " + reopen_error_);
  }

  // Journal first, then the file; a failure while applying undoes the whole call.
  Status write(const std::vector<Op>& ops, uint64_t payload) {
    if (Status s = ensure_open(); !ok(s)) return s;
    uint64_t free = 0;
    if (!space_.allows(payload, &free))
      return fail(Status::YOKAN_ERR_IO, SpaceGuard::refusal("gdbm", free, payload));
    if (!journal_->append(ops, sync_)) {
      int e = errno;
      return fail(errno_status(e),
                  "gdbm: cannot append to \"" + files_.journal() + "\": " + std::strerror(e));
    }
    for (const Op& op : ops) {
      if (!apply_op(db_, op)) return undo_last();
    }
    // Bounded journal: refresh the copy once it costs no more than what was
    // journalled. The write is already durable, so a refresh that fails (no
    // room for the copy, say) only postpones it.
    if (journal_->size() >= std::max(journal_limit_, base_size_)) {
      std::string ignored;
      if (files_.snapshot(db_, &ignored) && journal_->clear())
        base_size_ = file_size(files_.base());
    }
    return Status::YOKAN_SUCCESS;
  }

  // The call being applied failed, and the file may hold part of it: forget
  // its record and rebuild the file from the copy and the rest of the journal.
  // With no room for that copy, reopen the file as it is (gdbm refuses every
  // call once a write failed); the rebuild is then retried by the next call
  // only if the reopen fails too. Returns the failed call's status.
  Status undo_last() {
    gdbm_error e = gdbm_last_errno(db_);
    Status s = e == GDBM_NO_ERROR ? Status::YOKAN_ERR_IO : map_errno(e);
    std::string message = std::string("gdbm: ") + gdbm_db_strerror(db_);
    const bool dropped = journal_->drop_last();
    gdbm_close(db_);
    db_ = nullptr;
    if (dropped && room_for(files_.path, file_size(files_.base()))) {
      db_ = files_.rebuild(*journal_, &reopen_error_);
      needs_rebuild_ = db_ == nullptr;
    }
    if (!db_ && !needs_rebuild_) db_ = files_.open_db(&reopen_error_);
    if (!db_) message += "; reopening the file failed: " + reopen_error_;
    return fail(s, std::move(message));
  }

  json config_;
  std::unique_ptr<PathLock> lock_;
  GdbmFiles files_;
  std::unique_ptr<gdbm_journal::Journal> journal_;
  GDBM_FILE db_;  // nullptr after a failed reopen: ensure_open() tries again
  OptionalMutex mutex_;
  bool sync_;
  uint64_t journal_limit_;
  uint64_t base_size_;
  SpaceGuard space_;
  bool needs_rebuild_ = false;  // the file may be torn: rebuild it before use
  std::string reopen_error_;
  std::vector<Op> ops_;  // reused per write call, under the mutex
};

Status open_gdbm(const json& config, std::unique_ptr<Backend>* out, std::string* error) {
  std::string path;
  bool use_lock = true, sync = true;
  uint64_t journal_limit = 64u << 20;
  json completed;
  Status st = with_config_errors(error, [&] {
    ConfigReader r(config, "gdbm config");
    path = r.require_string("path");
    if (path.empty()) throw ConfigError("gdbm config: \"path\" must not be empty");
    use_lock = r.get_bool("use_lock", true);
    sync = r.get_bool("sync", true);
    journal_limit = r.get_uint("journal_limit", journal_limit);
    completed = r.finish();
    return Status::YOKAN_SUCCESS;
  });
  if (!ok(st)) return st;

  st = make_parent_directories(path, error);
  if (!ok(st)) return st;
  std::unique_ptr<PathLock> lock;
  st = PathLock::acquire(path + ".lock", path, true, &lock, error);
  if (!ok(st)) return st;

  GdbmFiles files{path};
  std::string message;
  auto journal = std::make_unique<gdbm_journal::Journal>();
  if (!journal->open(files.journal())) {
    int e = errno;
    if (error)
      *error = "gdbm: cannot open the journal \"" + files.journal() + "\": " + std::strerror(e);
    return errno_status(e);
  }
  const bool have_base = ::access(files.base().c_str(), F_OK) == 0;
  GDBM_FILE db = nullptr;
  if (journal->dirty()) {
    // The last run stopped with writes in flight: rebuild from the copy.
    if (!have_base) {
      if (error)
        *error = "gdbm: \"" + files.base() + "\" is missing but \"" + files.journal() +
                 "\" needs it; restore it to recover the database";
      return Status::YOKAN_ERR_CORRUPTION;
    }
    db = files.rebuild(*journal, &message);
  } else {
    db = files.open_db(&message);
  }
  if (db == nullptr) {
    if (error) *error = message;
    gdbm_error e = gdbm_errno;
    if (e == GDBM_CANT_BE_WRITER) return Status::YOKAN_ERR_PERMISSION;
    return e == GDBM_NO_ERROR ? Status::YOKAN_ERR_IO : map_errno(e);
  }
  // A new copy after a replay saves the next open from replaying again; it is
  // only required when there is none yet (a new database, or one written
  // before this scheme), because every write needs one to be rebuilt from.
  if (journal->dirty() || !have_base) {
    if (files.snapshot(db, &message) && journal->clear()) {
      // a clean start
    } else if (!have_base) {
      if (error)
        *error = message.empty() ? "gdbm: cannot clear \"" + files.journal() + "\"" : message;
      gdbm_close(db);
      return Status::YOKAN_ERR_IO;
    }
  }
  *out = std::make_unique<GdbmBackend>(std::move(completed), std::move(lock), std::move(files),
                                       std::move(journal), db, use_lock, sync, journal_limit);
  return Status::YOKAN_SUCCESS;
}

}  // namespace

// Exceptions escaping the factory are mapped to statuses by the registry.
void register_backend_gdbm(std::map<std::string, BackendFactory>& r) { r["gdbm"] = open_gdbm; }

}  // namespace yokan
