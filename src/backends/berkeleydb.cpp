// The "berkeleydb" backend: a Berkeley DB btree (sorted) or hash (unsorted)
// database in the file `path` (relative to `home`/yokan when `home` is given),
// optionally the sub-database `name` of that file. With `path` and `name` both
// empty the database lives in memory only (persistent=false).
//
// Acknowledged: Berkeley DB keeps changed pages in its own cache (private
// memory of this process), so by itself a put() is lost if the process is
// killed. With "sync" (default true) every write call ends with DB->sync(),
// which writes the dirty pages into the file and fsyncs it: an acknowledged
// write then survives a SIGKILL (and a machine crash). A crash in the middle
// of a write may still leave that one write torn. With "sync": false,
// acknowledged writes are only safe after flush() or a clean close.
//
// The destructor closes the database (DB->close writes the cache back) and
// deletes nothing. A lock file `<file>.lock` makes a second open fail.
//
// A full disk: a write whose sync fails stays in the cache (and may reach the
// file later), and once the cache is full of pages it cannot write back,
// Berkeley DB can only fail or stall. So writes are kept from filling the
// disk (SpaceGuard: 1 MiB plus twice the payload stays free) and refused
// before Berkeley DB sees them, leaving the database as it was.
#include <db_cxx.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <shared_mutex>

#include "config_reader.hpp"
#include "file_util.hpp"
#include "space_guard.hpp"

namespace yokan {
namespace {

Status code_of(int rc) {
  switch (rc) {
    case 0:
      return Status::YOKAN_SUCCESS;
    case DB_NOTFOUND:
    case DB_KEYEMPTY:
      return Status::YOKAN_ERR_KEY_NOT_FOUND;
    case DB_RUNRECOVERY:
    case DB_VERIFY_BAD:
    case DB_PAGE_NOTFOUND:
      return Status::YOKAN_ERR_CORRUPTION;
    case DB_LOCK_DEADLOCK:
    case DB_LOCK_NOTGRANTED:
      return Status::YOKAN_ERR_BUSY;
    case EINVAL:
      return Status::YOKAN_ERR_INVALID_ARGS;
    case ENOMEM:
      return Status::YOKAN_ERR_ALLOCATION;
    case EACCES:
      return Status::YOKAN_ERR_PERMISSION;
    default:
      return Status::YOKAN_ERR_IO;
  }
}

// A failure keeps Berkeley DB's words (its own, or strerror: "No space left
// on device") for the client; a missing key needs none.
Status map_rc(int rc) {
  Status code = code_of(rc);
  if (ok(code) || code == Status::YOKAN_ERR_KEY_NOT_FOUND) return code;
  return fail(code, std::string("berkeleydb: ") + db_strerror(rc));
}

// Bytewise order, shorter key first on a common prefix (BDB's default btree
// order is the same, but setting it makes the contract explicit and stable).
int bytewise_compare(Db*, const Dbt* a, const Dbt* b) {
  size_t n = a->get_size() < b->get_size() ? a->get_size() : b->get_size();
  int c = n ? std::memcmp(a->get_data(), b->get_data(), n) : 0;
  if (c != 0) return c;
  if (a->get_size() == b->get_size()) return 0;
  return a->get_size() < b->get_size() ? -1 : 1;
}

// A Dbt for input bytes. DB_THREAD requires a memory flag even on input keys:
// USERMEM with ulen = size. Btree get() copies the stored key back into the
// key Dbt (same bytes with our exact comparator), so get() passes a copy.
Dbt in_dbt(std::string_view s) {
  Dbt d(const_cast<char*>(s.data()), static_cast<u_int32_t>(s.size()));
  d.set_ulen(static_cast<u_int32_t>(s.size()));
  d.set_flags(DB_DBT_USERMEM);
  return d;
}

// A Dbt that Berkeley DB fills with malloc'd memory (required with DB_THREAD).
struct OutDbt {
  Dbt dbt;
  OutDbt() { dbt.set_flags(DB_DBT_REALLOC); }
  ~OutDbt() { std::free(dbt.get_data()); }
  std::string_view view() const {
    return std::string_view(static_cast<const char*>(dbt.get_data()), dbt.get_size());
  }
};

class BerkeleyBackend final : public Backend {
 public:
  // `space`: the free-space check of a database in a file (null in memory).
  BerkeleyBackend(json config, bool sorted, bool persistent, bool sync,
                  std::unique_ptr<PathLock> lock, std::unique_ptr<DbEnv> env,
                  std::unique_ptr<Db> db, std::unique_ptr<SpaceGuard> space)
      : space_(std::move(space)),
        config_(std::move(config)),
        sorted_(sorted),
        persistent_(persistent),
        sync_(sync),
        lock_(std::move(lock)),
        env_(std::move(env)),
        db_(std::move(db)) {}

  ~BerkeleyBackend() override {
    std::unique_lock<std::shared_mutex> guard(mutex_);
    db_->close(0);  // writes the cache back to the file; nothing is removed
    db_.reset();
    if (env_) env_->close(0);
  }

  BackendTraits traits() const override { return {sorted_, true, persistent_}; }
  json config() const override { return config_; }

  Status put(std::string_view key, std::string_view value) override {
    if (Status s = may_write(key.size() + value.size()); !ok(s)) return s;
    std::unique_lock<std::shared_mutex> guard(mutex_);
    Dbt k = in_dbt(key), v = in_dbt(value);
    int rc = db_->put(nullptr, &k, &v, 0);
    return map_rc(rc ? rc : after_write());
  }

  Status put_batch(
      const std::vector<std::pair<std::string_view, std::string_view>>& pairs) override {
    return write_batch({}, pairs);
  }

  // Not atomic (no transactional environment, see README): the batch goes
  // into the cache under one lock and one sync ends it, so a SIGKILL before
  // that sync loses all of it, but a kill during the sync, a cache that
  // writes pages back early, or an error half-way can leave part of it.
  Status write_batch(
      const std::vector<std::string_view>& erases,
      const std::vector<std::pair<std::string_view, std::string_view>>& puts) override {
    uint64_t bytes = 0;
    for (auto key : erases) bytes += key.size();
    for (const auto& [key, value] : puts) bytes += key.size() + value.size();
    if (Status s = may_write(bytes); !ok(s)) return s;
    std::unique_lock<std::shared_mutex> guard(mutex_);
    for (auto key : erases) {
      Dbt k = in_dbt(key);
      int rc = db_->del(nullptr, &k, 0);
      if (rc != 0 && rc != DB_NOTFOUND) return map_rc(rc);
    }
    for (const auto& [key, value] : puts) {
      Dbt k = in_dbt(key), v = in_dbt(value);
      int rc = db_->put(nullptr, &k, &v, 0);
      if (rc != 0) return map_rc(rc);
    }
    return map_rc(after_write());  // one sync for the whole batch
  }

  Status get(std::string_view key, const ValueVisitor& visit) override {
    std::shared_lock<std::shared_mutex> guard(mutex_);
    std::string key_copy(key);  // written to by Berkeley DB, see in_dbt
    Dbt k = in_dbt(key_copy);
    OutDbt v;
    int rc = db_->get(nullptr, &k, &v.dbt, 0);
    if (rc == 0) visit(v.view());
    return map_rc(rc);
  }

  Status erase(std::string_view key) override {
    if (Status s = may_write(key.size()); !ok(s)) return s;
    std::unique_lock<std::shared_mutex> guard(mutex_);
    Dbt k = in_dbt(key);
    int rc = db_->del(nullptr, &k, 0);
    if (rc == DB_NOTFOUND) return Status::YOKAN_SUCCESS;  // erasing an absent key is fine
    return map_rc(rc ? rc : after_write());
  }

  // Native count: the statistics of a full (non-fast) stat are exact.
  Status count(uint64_t* n) override {
    std::shared_lock<std::shared_mutex> guard(mutex_);
    void* sp = nullptr;
    int rc = db_->stat(nullptr, &sp, 0);
    if (rc != 0) return map_rc(rc);
    *n = sorted_ ? static_cast<DB_BTREE_STAT*>(sp)->bt_ndata
                 : static_cast<DB_HASH_STAT*>(sp)->hash_ndata;
    std::free(sp);
    return Status::YOKAN_SUCCESS;
  }

  Status iterate(std::string_view from, bool inclusive, bool want_values,
                 const PairVisitor& visit) override {
    std::shared_lock<std::shared_mutex> guard(mutex_);
    Dbc* cursor = nullptr;
    int rc = db_->cursor(nullptr, &cursor, 0);
    if (rc != 0) return map_rc(rc);
    OutDbt k, v;
    if (sorted_ && !from.empty()) {
      // DB_SET_RANGE reads the start key from the Dbt and replaces it.
      void* buf = std::malloc(from.size());
      if (!buf) {
        cursor->close();
        return Status::YOKAN_ERR_ALLOCATION;
      }
      std::memcpy(buf, from.data(), from.size());
      k.dbt.set_data(buf);
      k.dbt.set_size(static_cast<u_int32_t>(from.size()));
      rc = cursor->get(&k.dbt, &v.dbt, DB_SET_RANGE);
      if (rc == 0 && !inclusive && k.view() == from) rc = cursor->get(&k.dbt, &v.dbt, DB_NEXT);
    } else {
      rc = cursor->get(&k.dbt, &v.dbt, DB_FIRST);
    }
    while (rc == 0) {
      if (!visit(k.view(), want_values ? v.view() : std::string_view())) break;
      rc = cursor->get(&k.dbt, &v.dbt, DB_NEXT);
    }
    cursor->close();
    return map_rc(rc == DB_NOTFOUND ? 0 : rc);
  }

  Status flush() override {
    std::unique_lock<std::shared_mutex> guard(mutex_);
    return map_rc(persistent_ ? db_->sync(0) : 0);
  }

 private:
  // Whether a write of about `payload` bytes may go to Berkeley DB now.
  Status may_write(uint64_t payload) {
    uint64_t free = 0;
    if (space_ && !space_->allows(payload, &free))
      return fail(Status::YOKAN_ERR_IO, SpaceGuard::refusal("berkeleydb", free, payload));
    return Status::YOKAN_SUCCESS;
  }

  std::unique_ptr<SpaceGuard> space_;

  // Called with the write lock held, after a successful write.
  int after_write() { return sync_ && persistent_ ? db_->sync(0) : 0; }

  json config_;
  bool sorted_, persistent_, sync_;
  std::unique_ptr<PathLock> lock_;
  std::unique_ptr<DbEnv> env_;
  std::unique_ptr<Db> db_;
  // Shared for reads, exclusive for writes: without a locking environment
  // Berkeley DB does not isolate concurrent readers from a writer.
  std::shared_mutex mutex_;
};

std::string join_path(const std::string& dir, const std::string& file) {
  if (dir.empty() || (!file.empty() && file[0] == '/')) return file;
  return dir + "/" + file;
}

Status open_berkeleydb(const json& config, std::unique_ptr<Backend>* out, std::string* error) {
  std::string type, home, path, name;
  bool create = true, sync = true;
  json completed;
  Status st = with_config_errors(error, [&] {
    ConfigReader r(config, "berkeleydb config");
    type = r.get_choice("type", "btree", {"btree", "hash"});
    create = r.get_bool("create_if_missing", true);
    home = r.get_string("home", "");
    path = r.get_string("path", "");
    name = r.get_string("name", "");
    sync = r.get_bool("sync", true);
    completed = r.finish();
    return Status::YOKAN_SUCCESS;
  });
  if (!ok(st)) return st;

  const bool sorted = type == "btree";
  const bool persistent = !path.empty();
  if (!home.empty()) home += "/yokan";
  const std::string file = join_path(home, path);

  std::unique_ptr<PathLock> lock;
  std::unique_ptr<DbEnv> env;
  std::unique_ptr<Db> db;
  if (persistent) {
    std::error_code ec;
    if (!create && !std::filesystem::exists(file, ec)) {
      if (error)
        *error = "berkeleydb: \"" + file + "\" does not exist and create_if_missing is false";
      return Status::YOKAN_ERR_INVALID_CONFIG;
    }
    st = make_directories(home, error);
    if (ok(st) && create) st = make_parent_directories(file, error);
    if (ok(st)) st = PathLock::acquire(file + ".lock", file, true, &lock, error);
    if (!ok(st)) return st;
  }
  int rc = 0;
  if (!home.empty()) {
    // A private environment (its regions in process memory): only a home
    // directory for relative file names and a shared cache.
    env = std::make_unique<DbEnv>(DB_CXX_NO_EXCEPTIONS);
    rc = env->open(home.c_str(), DB_CREATE | DB_INIT_MPOOL | DB_PRIVATE | DB_THREAD, 0644);
    if (rc != 0) {
      if (error) *error = "berkeleydb: cannot open home \"" + home + "\": " + db_strerror(rc);
      env->close(0);
      return map_rc(rc);
    }
  }
  db = std::make_unique<Db>(env.get(), DB_CXX_NO_EXCEPTIONS);
  if (sorted) rc = db->set_bt_compare(bytewise_compare);
  u_int32_t flags = DB_THREAD | (create ? DB_CREATE : 0);
  // With a home, the file name is relative to it; Berkeley DB resolves it.
  const std::string& open_name = env ? path : file;
  if (rc == 0)
    rc = db->open(nullptr, open_name.empty() ? nullptr : open_name.c_str(),
                  name.empty() ? nullptr : name.c_str(), sorted ? DB_BTREE : DB_HASH, flags, 0644);
  if (rc != 0) {
    if (error) *error = "berkeleydb: cannot open \"" + file + "\": " + db_strerror(rc);
    db->close(0);
    if (env) env->close(0);
    return rc == ENOENT ? Status::YOKAN_ERR_INVALID_CONFIG : map_rc(rc);
  }
  std::unique_ptr<SpaceGuard> space;
  if (persistent) {
    std::string dir = std::filesystem::path(file).parent_path().string();
    space = std::make_unique<SpaceGuard>(dir.empty() ? "." : dir, uint64_t(1) << 20);
  }
  *out = std::make_unique<BerkeleyBackend>(std::move(completed), sorted, persistent, sync,
                                           std::move(lock), std::move(env), std::move(db),
                                           std::move(space));
  return Status::YOKAN_SUCCESS;
}

}  // namespace

void register_backend_berkeleydb(std::map<std::string, BackendFactory>& r) {
  r["berkeleydb"] = [](const json& config, std::unique_ptr<Backend>* out, std::string* error) {
    try {
      return open_berkeleydb(config, out, error);
    } catch (const DbException& e) {
      if (error) *error = std::string("berkeleydb: ") + e.what();
      return map_rc(e.get_errno());
    } catch (const std::bad_alloc&) {
      return Status::YOKAN_ERR_ALLOCATION;
    } catch (const std::exception& e) {
      if (error) *error = std::string("berkeleydb: ") + e.what();
      return Status::YOKAN_ERR_OTHER;
    }
  };
}

}  // namespace yokan
