// Snapshot and restore of a provider's database (docs/snapshot.rst).
//
// Consistency: a backend with its own consistent-copy facility (checkpoint():
// rocksdb, lmdb) copies while the provider keeps serving. Any other backend is
// dumped pair by pair while the provider holds write_order exclusively: every
// write of every backend takes it (shared), so this is one consistent version
// and the hot path pays nothing for it; requests wait meanwhile (the docs
// give the pause measured on 1 GB).
//
// Replacement: the database is a shared_ptr swapped under write_order held
// exclusively. A request that holds write_order (get, put, erase) sees the
// old or the new one whole; one that pinned it (listings, counts) finishes
// on the one it pinned, which is closed when the last such request ends.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <utility>

#include "server/no_database.hpp"
#include "server/provider_impl.hpp"
#include "server/snapshot_io.hpp"

namespace yokan {

namespace fs = std::filesystem;

namespace {

Status refuse(std::string* error, Status s, std::string message) {
  *error = std::move(message);
  return s;
}

// Moves the directory `from` to `to` (absent, or empty and then replaced);
// false if it cannot (another file system): the caller copies instead.
bool rename_into(const std::string& from, const std::string& to) {
  std::error_code ec;
  if (fs::exists(to, ec)) fs::remove(to, ec);  // empty: checked by the caller
  return ::rename(from.c_str(), to.c_str()) == 0;
}

}  // namespace

std::string ProviderImpl::db_type() const {
  std::lock_guard<std::mutex> g(config_mu);
  auto it = config.find("database");
  if (it == config.end() || !it->is_object() || !it->contains("type")) return "";
  return (*it)["type"].get<std::string>();
}

std::shared_ptr<Backend> ProviderImpl::install(std::shared_ptr<Backend> next,
                                               const std::string& type) {
  const bool none = dynamic_cast<NoDatabase*>(next.get()) != nullptr;
  json db;
  if (!none) db = {{"type", type}, {"config", next->config()}};
  std::shared_ptr<Backend> old;
  {
    std::unique_lock<std::shared_mutex> g(write_order);
    old = std::exchange(backend, std::move(next));
  }
  std::lock_guard<std::mutex> g(config_mu);
  if (none)
    config.erase("database");
  else
    config["database"] = std::move(db);
  return old;
}

Status ProviderImpl::copy_out(Backend& db, const std::string& type, const std::string& dir,
                              bool pause_for_dump, bool durable, std::string* error) {
  const fs::path data = fs::path(dir) / "data";
  snapshot::Manifest m;
  m.type = type;
  m.db_config = db.config();
  m.format = "files";
  Status s = db.checkpoint(data.string(), error);
  if (s == Status::YOKAN_ERR_OP_UNSUPPORTED) {
    error->clear();
    m.format = "dump";
    std::unique_lock<std::shared_mutex> paused(write_order, std::defer_lock);
    if (pause_for_dump) paused.lock();
    std::error_code ec;
    fs::create_directories(data, ec);
    // Written under the pause, synced after it: the consistent point needs
    // the pairs read, not on disk.
    s = ec ? refuse(error, Status::YOKAN_ERR_IO,
                    "cannot create \"" + data.string() + "\": " + ec.message())
           : snapshot::write_dump(db, (data / snapshot::kDumpFile).string(), false, error);
    if (paused.owns_lock()) paused.unlock();
    if (ok(s) && durable) s = snapshot::sync_file((data / snapshot::kDumpFile).string(), error);
  }
  if (!ok(s)) return s;
  m.files = snapshot::list_files(data.string());
  return snapshot::write_manifest(dir, m, error);
}

Status ProviderImpl::snapshot(const std::string& dest, bool remove_source, std::string* error) {
  const std::string who = "provider " + std::to_string(id);
  if (dest.empty()) return refuse(error, Status::YOKAN_ERR_INVALID_ARGS, "empty snapshot path");
  if (remove_source && read_only)
    return refuse(error, Status::YOKAN_ERR_PERMISSION,
                  who + " is read-only: a snapshot with remove_source would delete its database");
  std::lock_guard<std::mutex> one_at_a_time(admin);
  std::shared_ptr<Backend> db = pin();
  if (auto* none = dynamic_cast<NoDatabase*>(db.get()))
    return refuse(error, none->status(), none->message());
  const std::string type = db_type();

  const fs::path root(dest), data = root / "data";
  std::error_code ec;
  if (fs::exists(root / snapshot::kManifest, ec) || fs::exists(data, ec))
    return refuse(error, Status::YOKAN_ERR_INVALID_ARGS,
                  "\"" + dest + "\" already holds a snapshot (or a data/ directory)");
  const bool made_root = !fs::exists(root, ec);
  fs::create_directories(root, ec);
  if (ec)
    return refuse(error, Status::YOKAN_ERR_IO, "cannot create \"" + dest + "\": " + ec.message());

  const json db_config = db->config();
  std::shared_ptr<Backend> detached;
  Status s;
  if (remove_source) {
    // No write may land after the copy, since the source goes: writers are
    // held back from the copy to the detach.
    std::unique_lock<std::shared_mutex> paused(write_order);
    s = copy_out(*db, type, dest, /*pause_for_dump=*/false, /*durable=*/true, error);
    if (ok(s)) detached = std::exchange(backend, no_database(id));
  } else {
    s = copy_out(*db, type, dest, /*pause_for_dump=*/true, /*durable=*/true, error);
  }
  if (!ok(s)) {
    snapshot::remove_path(data.string());
    snapshot::remove_path((root / snapshot::kManifest).string());
    if (made_root) snapshot::remove_path(root.string());
    if (error->empty()) *error = "snapshot into \"" + dest + "\" failed";
    return s;
  }
  if (detached) {
    {
      std::lock_guard<std::mutex> g(config_mu);
      config.erase("database");
    }
    db.reset();
    snapshot::close_and_delete(std::move(detached), snapshot::storage_paths(type, db_config));
  }
  return Status::YOKAN_SUCCESS;
}

Status ProviderImpl::restore(const std::string& src, const std::string& new_root,
                             const std::string& extra, std::string* error, bool move_data) {
  if (new_root.empty())
    return refuse(error, Status::YOKAN_ERR_INVALID_ARGS,
                  "restore needs a new_root: the directory the database is restored into");
  if (src.empty()) return refuse(error, Status::YOKAN_ERR_INVALID_ARGS, "empty snapshot path");
  std::lock_guard<std::mutex> one_at_a_time(admin);
  snapshot::Manifest m;
  Status s = snapshot::read_manifest(src, &m, error);
  if (!ok(s)) return s;
  json cfg = m.db_config;
  if (!extra.empty()) {
    json patch;
    try {
      patch = json::parse(extra);
    } catch (const json::exception& e) {
      return refuse(error, Status::YOKAN_ERR_INVALID_CONFIG,
                    std::string("extra_config is not valid JSON: ") + e.what());
    }
    if (!patch.is_object())
      return refuse(error, Status::YOKAN_ERR_INVALID_CONFIG, "extra_config must be a JSON object");
    cfg.merge_patch(patch);  // the caller's values win
  }
  const auto names = available_backends();
  if (std::find(names.begin(), names.end(), m.type) == names.end())
    return refuse(error, Status::YOKAN_ERR_INVALID_BACKEND,
                  "the snapshot's backend \"" + m.type + "\" is not compiled into this build");
  if (!snapshot::absent_or_empty(new_root))
    return refuse(error, Status::YOKAN_ERR_INVALID_ARGS,
                  "new_root \"" + new_root + "\" exists and is not empty");
  std::error_code ec;
  const bool made_root = !fs::exists(new_root, ec);
  const fs::path data = fs::path(src) / "data";
  cfg = snapshot::relocate(m.type, cfg, new_root);
  // In-memory backends have nothing to copy: their data is a dump (also
  // upstream's, whose manifest says no format).
  const bool dump = m.format == "dump" || (!cfg.contains("path") && m.files.size() == 1);
  if (dump) {
    fs::create_directories(new_root, ec);
    if (ec)
      s = refuse(error, Status::YOKAN_ERR_IO,
                 "cannot create \"" + new_root + "\": " + ec.message());
  } else if (move_data && rename_into(data.string(), new_root)) {
    s = Status::YOKAN_SUCCESS;  // the received copy becomes the database
  } else {
    s = snapshot::copy_tree(data.string(), new_root, /*link_immutable=*/true, error);
  }
  std::unique_ptr<Backend> fresh;
  if (ok(s)) {
    std::string why_not;
    s = create_backend(m.type, cfg, &fresh, &why_not);
    if (!ok(s))
      *error = "cannot open the restored " + m.type +
               " database: " + (why_not.empty() ? status_message(s) : why_not);
  }
  if (ok(s) && dump) {
    const std::string file =
        (data / (m.format == "dump" ? std::string(snapshot::kDumpFile) : m.files[0])).string();
    s = snapshot::load_dump(*fresh, file, error);
    if (ok(s)) s = fresh->flush();
  }
  if (!ok(s)) {
    fresh.reset();
    if (made_root) snapshot::remove_path(new_root);
    if (error->empty()) *error = "restore from \"" + src + "\" failed";
    return s;
  }
  install(std::shared_ptr<Backend>(std::move(fresh)), m.type);
  return Status::YOKAN_SUCCESS;
}

// meta [destination path]. Writes where the provider runs, so it is refused
// unless the provider's config names a "snapshot_dir", and then only inside
// it: the path is resolved (symbolic links and "..") before the check.
void ProviderImpl::handle_snapshot(RequestPtr req) {
  const std::string who = "provider " + std::to_string(id);
  const std::string dest(req->meta());
  if (snapshot_dir.empty())
    return req->respond(Status::YOKAN_ERR_PERMISSION,
                        who + " refuses remote snapshots: its config sets no \"snapshot_dir\"");
  if (dest.empty() || dest.find('\0') != std::string::npos)
    return req->respond(Status::YOKAN_ERR_INVALID_ARGS, "empty or malformed snapshot path");
  std::error_code ec;
  fs::path base = fs::weakly_canonical(snapshot_dir, ec);
  if (base.filename().empty()) base = base.parent_path();  // "dir/" -> "dir"
  fs::path target = fs::path(dest).is_absolute() ? fs::path(dest) : fs::path(snapshot_dir) / dest;
  if (!ec) target = fs::weakly_canonical(target, ec);
  auto inside = [&] {
    auto b = base.begin(), t = target.begin();
    for (; b != base.end(); ++b, ++t)
      if (t == target.end() || *b != *t) return false;
    return t != target.end();  // strictly below it
  };
  if (ec || !inside())
    return req->respond(Status::YOKAN_ERR_PERMISSION, who + ": snapshot destination \"" + dest +
                                                          "\" is not inside its " +
                                                          "snapshot_dir \"" + snapshot_dir + "\"");
  std::string error;
  Status s = snapshot(target.string(), false, &error);
  req->respond(s, ok(s) ? std::string() : error);
}

}  // namespace yokan
