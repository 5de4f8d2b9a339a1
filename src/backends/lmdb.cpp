// The "lmdb" backend: an LMDB environment in the directory `path`.
//
// Acknowledged = durable: every write is one committed transaction, which
// LMDB writes into the file with pwrite() and, since MDB_NOSYNC is not used,
// fdatasyncs before returning: an acknowledged write survives a SIGKILL of the
// process and also a machine crash.
//
// A full disk: LMDB is not opened with MDB_WRITEMAP. With it, a commit writes
// through a shared mapping of a sparse file, and a page the filesystem cannot
// back kills the process with SIGBUS; without it, the commit's pwrite() fails
// with ENOSPC, the transaction is aborted (nothing of it is visible or on
// disk) and the write fails with YOKAN_ERR_IO and "No space left on device".
// Reads only read the mapping, of pages that were written. The lock file is
// also a shared mapping (the reader table): its blocks are allocated when the
// environment is opened, so that a full disk fails the open instead.
//
// The destructor closes the environment and deletes nothing. LMDB itself lets
// several processes share an environment, so a lock file `yokan.lock` inside
// the directory makes a second provider on the same path fail.
//
// LMDB's default comparator is memcmp over the shorter length, shorter key
// first: bytewise order. Keys must be 1 to 511 bytes (LMDB's limit).
#include <fcntl.h>
#include <lmdb.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <shared_mutex>

#include "config_reader.hpp"
#include "file_util.hpp"

namespace yokan {
namespace {

Status code_of(int rc) {
  switch (rc) {
    case MDB_SUCCESS:
      return Status::YOKAN_SUCCESS;
    case MDB_NOTFOUND:
      return Status::YOKAN_ERR_KEY_NOT_FOUND;
    case MDB_BAD_VALSIZE:
    case EINVAL:
      return Status::YOKAN_ERR_INVALID_ARGS;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH:
      return Status::YOKAN_ERR_CORRUPTION;
    case ENOMEM:
      return Status::YOKAN_ERR_ALLOCATION;
    case EACCES:
      return Status::YOKAN_ERR_PERMISSION;
    default:
      return Status::YOKAN_ERR_IO;
  }
}

// A failure keeps LMDB's words (its own, or strerror: "No space left on
// device") for the client; a missing key needs none.
Status map_rc(int rc) {
  Status code = code_of(rc);
  if (ok(code) || code == Status::YOKAN_ERR_KEY_NOT_FOUND) return code;
  return fail(code, std::string("lmdb: ") + mdb_strerror(rc));
}

MDB_val val(std::string_view s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }
std::string_view view(const MDB_val& v) {
  return std::string_view(static_cast<const char*>(v.mv_data), v.mv_size);
}

// Initial map size; it doubles whenever a write finds the map full (the file
// itself only grows as pages are written).
// (Overridable at compile time so the growth path can be tested with a tiny map.)
#ifndef YOKAN_LMDB_INITIAL_MAP_SIZE
#define YOKAN_LMDB_INITIAL_MAP_SIZE (size_t(1) << 30)
#endif
constexpr size_t kInitialMapSize = YOKAN_LMDB_INITIAL_MAP_SIZE;
// Below this much free space, a commit that failed with EIO failed for space.
constexpr uintmax_t kRoomForACommit = uintmax_t(1) << 20;

class LmdbBackend final : public Backend {
 public:
  LmdbBackend(json config, std::string path, std::unique_ptr<PathLock> lock, MDB_env* env,
              MDB_dbi dbi)
      : config_(std::move(config)),
        path_(std::move(path)),
        lock_(std::move(lock)),
        env_(env),
        dbi_(dbi) {}

  ~LmdbBackend() override {
    std::unique_lock<std::shared_mutex> guard(mutex_);
    mdb_env_close(env_);  // commits are already on disk; nothing is deleted
  }

  BackendTraits traits() const override {
    BackendTraits t{true, true, true};
    t.atomic_batches = true;
    return t;
  }
  json config() const override { return config_; }

  Status put(std::string_view key, std::string_view value) override {
    return write([&](MDB_txn* txn) {
      MDB_val k = val(key), v = val(value);
      return mdb_put(txn, dbi_, &k, &v, 0);
    });
  }

  // One transaction for the whole batch: atomic and a single commit.
  Status put_batch(
      const std::vector<std::pair<std::string_view, std::string_view>>& pairs) override {
    return write_batch({}, pairs);
  }

  Status write_batch(
      const std::vector<std::string_view>& erases,
      const std::vector<std::pair<std::string_view, std::string_view>>& puts) override {
    return write([&](MDB_txn* txn) {
      for (auto key : erases) {
        MDB_val k = val(key);
        int rc = mdb_del(txn, dbi_, &k, nullptr);
        if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) return rc;
      }
      for (const auto& [key, value] : puts) {
        MDB_val k = val(key), v = val(value);
        int rc = mdb_put(txn, dbi_, &k, &v, 0);
        if (rc != MDB_SUCCESS) return rc;
      }
      return MDB_SUCCESS;
    });
  }

  Status erase(std::string_view key) override {
    return write([&](MDB_txn* txn) {
      MDB_val k = val(key);
      int rc = mdb_del(txn, dbi_, &k, nullptr);
      return rc == MDB_NOTFOUND ? MDB_SUCCESS : rc;  // erasing an absent key is fine
    });
  }

  Status get(std::string_view key, const ValueVisitor& visit) override {
    return read([&](MDB_txn* txn) {
      MDB_val k = val(key), v;
      int rc = mdb_get(txn, dbi_, &k, &v);
      if (rc == MDB_SUCCESS) visit(view(v));
      return rc;
    });
  }

  Status count(uint64_t* n) override {
    return read([&](MDB_txn* txn) {
      MDB_stat stat;
      int rc = mdb_stat(txn, dbi_, &stat);
      if (rc == MDB_SUCCESS) *n = stat.ms_entries;
      return rc;
    });
  }

  Status iterate(std::string_view from, bool inclusive, bool want_values,
                 const PairVisitor& visit) override {
    return read([&](MDB_txn* txn) {
      MDB_cursor* cursor = nullptr;
      int rc = mdb_cursor_open(txn, dbi_, &cursor);
      if (rc != MDB_SUCCESS) return rc;
      MDB_val k = val(from), v;
      rc = from.empty() ? mdb_cursor_get(cursor, &k, &v, MDB_FIRST)
                        : mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
      if (rc == MDB_SUCCESS && !inclusive && !from.empty() && view(k) == from)
        rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT);
      while (rc == MDB_SUCCESS) {
        if (!visit(view(k), want_values ? view(v) : std::string_view())) break;
        rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT);
      }
      mdb_cursor_close(cursor);
      return rc == MDB_NOTFOUND ? MDB_SUCCESS : rc;
    });
  }

  Status flush() override {
    std::shared_lock<std::shared_mutex> guard(mutex_);
    return map_rc(mdb_env_sync(env_, 1));
  }

  // LMDB's own copy (mdb_env_copy2) reads through one read transaction, so
  // the copy is one consistent version. It holds the mutex shared: readers go
  // on, writers wait until the copy is done, because a write may have to grow
  // the map, which LMDB allows only with no transaction open.
  Status checkpoint(const std::string& dir, std::string* error) override {
    Status st = make_directories(dir, error);
    if (!ok(st)) return st;
    std::shared_lock<std::shared_mutex> guard(mutex_);
    int rc = mdb_env_copy2(env_, dir.c_str(), 0);
    if (rc != MDB_SUCCESS && error) *error = "lmdb: copy into \"" + dir + "\": " + mdb_strerror(rc);
    return rc == MDB_SUCCESS ? Status::YOKAN_SUCCESS : map_rc(rc);
  }

 private:
  // Readers share the mutex; writers and map resizes take it exclusively. This
  // also makes no_lock (MDB_NOLOCK, no reader table) safe within the process.
  template <typename F>
  Status read(F&& body) {
    std::shared_lock<std::shared_mutex> guard(mutex_);
    MDB_txn* txn = nullptr;
    int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn);
    if (rc != MDB_SUCCESS) return map_rc(rc);
    rc = body(txn);
    mdb_txn_abort(txn);  // read-only: nothing to commit
    return map_rc(rc);
  }

  template <typename F>
  Status write(F&& body) {
    std::unique_lock<std::shared_mutex> guard(mutex_);
    for (;;) {
      MDB_txn* txn = nullptr;
      int rc = mdb_txn_begin(env_, nullptr, 0, &txn);
      if (rc != MDB_SUCCESS) return map_rc(rc);
      rc = body(txn);
      if (rc == MDB_SUCCESS) {
        rc = mdb_txn_commit(txn);
      } else {
        mdb_txn_abort(txn);
      }
      if (rc == EIO) return io_error();
      if (rc != MDB_MAP_FULL) return map_rc(rc);
      // Grow the map and retry; no transaction is active (we hold the mutex).
      MDB_envinfo info;
      mdb_env_info(env_, &info);
      rc = mdb_env_set_mapsize(env_, info.me_mapsize * 2);
      if (rc != MDB_SUCCESS) return map_rc(rc);
    }
  }

  // LMDB reports a short pwrite() as EIO (it drops the ENOSPC that the next
  // write would have given): say so when the disk is what is short.
  Status io_error() const {
    std::error_code ec;
    auto space = std::filesystem::space(path_, ec);
    if (ec || space.available >= kRoomForACommit) return map_rc(EIO);
    return fail(Status::YOKAN_ERR_IO,
                "lmdb: Input/output error: the commit could not be written: "
                "No space left on device (" +
                    std::to_string(space.available >> 10) + " KiB free)");
  }

  json config_;
  const std::string path_;
  std::unique_ptr<PathLock> lock_;
  MDB_env* env_;
  MDB_dbi dbi_;
  std::shared_mutex mutex_;
};

// LMDB maps its lock file shared and writes its reader table through the
// mapping; LMDB only ftruncates it (a sparse file), so on a full disk the
// first touch of a page would be a SIGBUS. Allocating the blocks first turns
// that into an error at open. 64 KiB covers the default 126 readers.
Status allocate_lock_file(const std::string& file, std::string* error) {
  int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  int rc = fd < 0 ? errno : ::posix_fallocate(fd, 0, 64 << 10);
  if (fd >= 0) ::close(fd);
  if (rc == 0) return Status::YOKAN_SUCCESS;
  if (error) *error = "lmdb: cannot allocate the lock file \"" + file + "\": " + std::strerror(rc);
  return rc == EACCES ? Status::YOKAN_ERR_PERMISSION : Status::YOKAN_ERR_IO;
}

Status open_lmdb(const json& config, std::unique_ptr<Backend>* out, std::string* error) {
  std::string path;
  bool create = true, no_lock = false;
  json completed;
  Status st = with_config_errors(error, [&] {
    ConfigReader r(config, "lmdb config");
    path = r.require_string("path");
    if (path.empty()) throw ConfigError("lmdb config: \"path\" must not be empty");
    create = r.get_bool("create_if_missing", true);
    no_lock = r.get_bool("no_lock", false);
    completed = r.finish();
    return Status::YOKAN_SUCCESS;
  });
  if (!ok(st)) return st;

  std::error_code ec;
  if (!std::filesystem::is_directory(path, ec)) {
    if (!create) {
      if (error) *error = "lmdb: \"" + path + "\" does not exist and create_if_missing is false";
      return Status::YOKAN_ERR_INVALID_CONFIG;
    }
    st = make_directories(path, error);
    if (!ok(st)) return st;
  }
  std::unique_ptr<PathLock> lock;
  st = PathLock::acquire(path + "/yokan.lock", path, true, &lock, error);
  if (!ok(st)) return st;

  MDB_env* env = nullptr;
  int rc = mdb_env_create(&env);
  if (rc != MDB_SUCCESS) {
    if (error) *error = std::string("lmdb: ") + mdb_strerror(rc);
    return code_of(rc);
  }
  // MDB_NOTLS: read transactions are not tied to a thread (handlers may move).
  // No MDB_WRITEMAP: see the top of the file.
  unsigned flags = MDB_NOTLS | (no_lock ? MDB_NOLOCK : 0);
  if (!no_lock) {
    st = allocate_lock_file(path + "/lock.mdb", error);
    if (!ok(st)) {
      mdb_env_close(env);
      return st;
    }
  }
  rc = mdb_env_set_mapsize(env, kInitialMapSize);
  if (rc == MDB_SUCCESS) rc = mdb_env_open(env, path.c_str(), flags, 0644);
  MDB_dbi dbi = 0;
  if (rc == MDB_SUCCESS) {
    MDB_txn* txn = nullptr;
    rc = mdb_txn_begin(env, nullptr, 0, &txn);
    if (rc == MDB_SUCCESS) {
      rc = mdb_dbi_open(txn, nullptr, 0, &dbi);
      if (rc == MDB_SUCCESS)
        rc = mdb_txn_commit(txn);
      else
        mdb_txn_abort(txn);
    }
  }
  if (rc != MDB_SUCCESS) {
    if (error) *error = "lmdb: cannot open \"" + path + "\": " + mdb_strerror(rc);
    mdb_env_close(env);
    return code_of(rc);
  }
  *out = std::make_unique<LmdbBackend>(std::move(completed), path, std::move(lock), env, dbi);
  return Status::YOKAN_SUCCESS;
}

}  // namespace

// Exceptions escaping the factory are mapped to statuses by the registry.
void register_backend_lmdb(std::map<std::string, BackendFactory>& r) { r["lmdb"] = open_lmdb; }

}  // namespace yokan
