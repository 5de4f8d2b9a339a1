// Migration of a provider's database to another provider over the engine
// (docs/snapshot.rst).
//
// Source (migrate()):
//   1. writes are refused (YOKAN_ERR_BUSY) from now on: the database is served
//      through a FrozenBackend, reads go on;
//   2. a snapshot is taken into a temporary directory next to the data;
//   3. kMigrateBegin sends the manifest and the file sizes, then every file
//      goes in chunks (kMigrateChunk: file, offset, bytes; idempotent, so a
//      chunk whose reply was lost is simply sent again), then kMigrateCommit
//      makes the destination restore from what it received;
//   4. success: the source answers YOKAN_ERR_MIGRATED, naming the destination,
//      and its files are deleted. Failure at any step: the destination is told
//      to drop what it received, and the source serves again, writes included.
// Destination: refuses (INVALID_DATABASE) when it already has a database,
// stages the files in NEW_ROOT.yokan-incoming, and on commit restores from
// there, moving the files into NEW_ROOT rather than copying them.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include "server/frozen_backend.hpp"
#include "server/no_database.hpp"
#include "server/provider_impl.hpp"
#include "server/snapshot_io.hpp"

namespace yokan {

namespace fs = std::filesystem;

// What a destination has received so far, under incoming_mu.
struct ProviderImpl::Incoming {
  uint64_t token = 0;
  std::string staging;  // NEW_ROOT.yokan-incoming
  std::string new_root;
  std::string extra;
  std::string type;
  std::map<std::string, uint64_t> sizes;  // by file name under data/
  bool temp_root = false;                 // new_root made here (in-memory database)
  std::string manifest;                   // JSON text, written at commit
  bool committed = false;
};

namespace {

constexpr size_t kChunk = size_t(8) << 20;   // bytes per kMigrateChunk
constexpr double kCallTimeoutMs = 30000;     // per chunk; a lost reply is re-sent
constexpr double kCommitTimeoutMs = 600000;  // the destination restores meanwhile
constexpr int kAttempts = 3;

Status set_error(std::string* error, Status s, std::string message) {
  *error = std::move(message);
  return s;
}

// A temporary directory next to the database's files (or in the system's
// temporary directory for an in-memory database).
std::string make_temp_dir(const std::vector<std::string>& storage, std::string* error) {
  std::error_code ec;
  fs::path parent = storage.empty() ? fs::temp_directory_path(ec)
                                    : fs::path(storage[0]).lexically_normal().parent_path();
  if (parent.empty()) parent = ".";
  std::string tmpl = (parent / ".yokan-migrate-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) {
    *error = "cannot create a temporary directory in \"" + parent.string() +
             "\": " + std::strerror(errno);
    return "";
  }
  return tmpl;
}

}  // namespace

Status ProviderImpl::migrate(const std::string& address, uint16_t dest_id,
                             const std::string& new_root, const std::string& extra,
                             std::string* error) {
  const std::string who = "provider " + std::to_string(id);
  if (address.empty()) return set_error(error, Status::YOKAN_ERR_INVALID_ARGS, "empty address");
  if (read_only)
    return set_error(error, Status::YOKAN_ERR_PERMISSION,
                     who + " is read-only: migrating would remove its database");
  std::lock_guard<std::mutex> one_at_a_time(admin);
  std::shared_ptr<Backend> db = pin();
  if (auto* none = dynamic_cast<NoDatabase*>(db.get()))
    return set_error(error, none->status(), none->message());
  const std::string type = db_type();
  const json db_config = db->config();
  const std::vector<std::string> storage = snapshot::storage_paths(type, db_config);
  const std::string where = address + " provider " + std::to_string(dest_id);

  // 1. From here on no write lands: the copy is the whole database.
  {
    auto frozen = std::make_shared<FrozenBackend>(
        db, who + " is migrating its database to " + where +
                ": writes are refused until the migration ends (then this provider answers "
                "YOKAN_ERR_MIGRATED, or serves again if it failed)");
    std::unique_lock<std::shared_mutex> g(write_order);
    backend = std::move(frozen);
  }
  std::string temp;
  EndpointPtr ep;
  uint64_t token = 0;
  bool begun = false;
  auto call = [&](rpc::Id which, std::string meta, const std::vector<Segment>& body, double timeout,
                  Reply* reply) {
    CallOptions options;
    options.timeout_ms = timeout;
    Status s = Status::YOKAN_SUCCESS;
    for (int attempt = 0; attempt < kAttempts; ++attempt) {
      *reply = Reply();
      s = engine->call(ep, dest_id, which, meta, body, options, reply);
      if (s != Status::YOKAN_ERR_TIMEOUT) break;  // re-sent only when the reply was lost
    }
    if (!ok(s))
      return set_error(error, s,
                       "migration to " + where + ": " +
                           (reply->error.empty() ? status_message(s) : reply->error));
    if (!ok(reply->status))
      return set_error(error, reply->status,
                       "migration to " + where + " refused: " +
                           (reply->meta.empty() ? status_message(reply->status) : reply->meta));
    return Status::YOKAN_SUCCESS;
  };

  Status s = Status::YOKAN_SUCCESS;
  // 2. The snapshot, next to the data.
  temp = make_temp_dir(storage, error);
  if (temp.empty()) s = Status::YOKAN_ERR_IO;
  if (ok(s)) s = copy_out(*db, type, temp, /*pause_for_dump=*/false, /*durable=*/false, error);
  // 3. The transfer.
  std::vector<std::string> files;
  if (ok(s)) {
    try {
      ep = engine->lookup(address);
    } catch (const Exception& e) {
      s = set_error(error, e.code(), "migration to " + where + ": " + e.what());
    }
  }
  if (ok(s)) {
    files = snapshot::list_files((fs::path(temp) / "data").string());
    std::vector<uint64_t> sizes;
    std::error_code ec;
    for (const auto& f : files) sizes.push_back(fs::file_size(fs::path(temp) / "data" / f, ec));
    if (ec) s = set_error(error, Status::YOKAN_ERR_IO, "cannot size the snapshot: " + ec.message());
    std::ifstream in(fs::path(temp) / snapshot::kManifest);
    std::stringstream manifest;
    manifest << in.rdbuf();
    WireWriter w;
    w.bytes(manifest.str()).bytes(new_root).bytes(extra);
    w.put<uint64_t>(files.size());
    for (size_t i = 0; i < files.size(); ++i) w.bytes(files[i]).put<uint64_t>(sizes[i]);
    Reply reply;
    if (ok(s)) s = call(rpc::kMigrateBegin, std::move(w.str()), {}, kCallTimeoutMs, &reply);
    if (ok(s)) {
      WireReader r(reply.meta);
      token = r.get<uint64_t>();
      if (!r.done())
        s = set_error(error, Status::YOKAN_ERR_OTHER,
                      "migration to " + where + ": malformed reply to its start");
      begun = ok(s);
    }
    std::vector<char> buf(kChunk);
    for (size_t i = 0; ok(s) && i < files.size(); ++i) {
      const std::string path = (fs::path(temp) / "data" / files[i]).string();
      int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        s = set_error(error, Status::YOKAN_ERR_IO,
                      "cannot open \"" + path + "\": " + std::strerror(errno));
        break;
      }
      for (uint64_t off = 0; ok(s) && (off < sizes[i] || (off == 0 && sizes[i] == 0));) {
        const size_t want = static_cast<size_t>(std::min<uint64_t>(kChunk, sizes[i] - off));
        ssize_t n = want == 0 ? 0 : ::pread(fd, buf.data(), want, static_cast<off_t>(off));
        if (n < 0 || static_cast<size_t>(n) != want) {
          s = set_error(error, Status::YOKAN_ERR_IO, "cannot read \"" + path + "\"");
          break;
        }
        WireWriter meta;
        meta.put<uint64_t>(token).bytes(files[i]).put<uint64_t>(off);
        s = call(rpc::kMigrateChunk, std::move(meta.str()), {{buf.data(), want}}, kCallTimeoutMs,
                 &reply);
        off += want;
        if (want == 0) break;  // an empty file: created by one empty chunk
      }
      ::close(fd);
    }
    if (ok(s)) {
      WireWriter meta;
      meta.put<uint64_t>(token);
      s = call(rpc::kMigrateCommit, std::move(meta.str()), {}, kCommitTimeoutMs, &reply);
    }
  }
  if (!temp.empty()) snapshot::remove_path(temp);

  if (!ok(s)) {
    // The destination drops what it has (best effort: it may be gone), and
    // the source serves again.
    if (begun) {
      WireWriter meta;
      meta.put<uint64_t>(token);
      Reply reply;
      CallOptions options;
      options.timeout_ms = 2000;
      engine->call(ep, dest_id, rpc::kMigrateAbort, meta.str(), {}, options, &reply);
    }
    std::unique_lock<std::shared_mutex> g(write_order);
    backend = db;
    return s;
  }
  // 4. Moved: answer MIGRATED from now on, and delete the source's files.
  auto gone = std::make_shared<NoDatabase>(Status::YOKAN_ERR_MIGRATED,
                                           who + "'s database migrated to " + where);
  std::shared_ptr<Backend> frozen = install(std::move(gone), "");
  frozen.reset();
  snapshot::close_and_delete(std::move(db), storage);
  return Status::YOKAN_SUCCESS;
}

// ---- destination ----

// meta [manifest JSON][new_root][extra_config][n u64][n x ([file name][size u64])]
// -> meta [token u64]
void ProviderImpl::handle_migrate_begin(RequestPtr req) {
  const std::string who = "provider " + std::to_string(id);
  WireReader in(req->meta());
  const std::string manifest(in.bytes());
  std::string new_root(in.bytes());
  const std::string extra(in.bytes());
  const uint64_t n = in.get<uint64_t>();
  auto session = std::make_shared<Incoming>();
  for (uint64_t i = 0; in.ok() && i < n && i < (uint64_t(1) << 20); ++i) {
    std::string name(in.bytes());
    session->sizes[name] = in.get<uint64_t>();
  }
  if (!in.done() || session->sizes.size() != n)
    return req->respond(Status::YOKAN_ERR_INVALID_ARGS, "malformed migration start");
  if (read_only)
    return req->respond(Status::YOKAN_ERR_PERMISSION,
                        who + " is read-only: it accepts no migrated database");
  {
    auto current = pin();
    if (!dynamic_cast<NoDatabase*>(current.get()))
      return req->respond(Status::YOKAN_ERR_INVALID_DATABASE,
                          who + " already has a database: a migration needs an empty provider");
  }
  json m;
  try {
    m = json::parse(manifest);
  } catch (const json::exception& e) {
    return req->respond(Status::YOKAN_ERR_INVALID_CONFIG,
                        std::string("migration manifest is not valid JSON: ") + e.what());
  }
  if (!m.is_object() || !m.contains("type") || !m["type"].is_string())
    return req->respond(Status::YOKAN_ERR_INVALID_CONFIG, "migration manifest has no \"type\"");
  session->type = m["type"].get<std::string>();
  const auto names = available_backends();
  if (std::find(names.begin(), names.end(), session->type) == names.end())
    return req->respond(Status::YOKAN_ERR_INVALID_BACKEND,
                        who + " has no \"" + session->type + "\" backend in its build");
  for (const auto& [name, size] : session->sizes) {
    const fs::path rel(name);
    (void)size;
    if (name.empty() || rel.is_absolute() ||
        std::any_of(rel.begin(), rel.end(), [](const fs::path& c) { return c == ".."; }))
      return req->respond(Status::YOKAN_ERR_INVALID_ARGS, "migration file outside data/: " + name);
  }
  if (new_root.empty()) {
    // In memory: the root only holds the received copy for a moment.
    const json cfg = m.value("db_config", json::object());
    if (cfg.is_object() && cfg.contains("path"))
      return req->respond(Status::YOKAN_ERR_INVALID_ARGS,
                          "migrating a " + session->type + " database needs a new_root");
    std::error_code ec;
    std::string tmpl = (fs::temp_directory_path(ec) / "yokan-migrated-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr)
      return req->respond(Status::YOKAN_ERR_IO, "cannot create a temporary directory");
    new_root = tmpl;
    session->temp_root = true;
  }
  if (!snapshot::absent_or_empty(new_root))
    return req->respond(Status::YOKAN_ERR_INVALID_ARGS,
                        "new_root \"" + new_root + "\" on " + who + " is not empty");
  session->new_root = new_root;
  session->extra = extra;
  session->manifest = manifest;
  session->staging = fs::path(new_root).lexically_normal().string();
  while (!session->staging.empty() && session->staging.back() == '/') session->staging.pop_back();
  session->staging += ".yokan-incoming";
  std::random_device rd;
  session->token = (uint64_t(rd()) << 32) ^ rd() ^ 1;
  std::lock_guard<std::mutex> g(incoming_mu);
  // A new start replaces one whose source gave up without telling.
  if (incoming && !incoming->committed) snapshot::remove_path(incoming->staging);
  std::error_code ec;
  if (fs::exists(session->staging, ec))  // not ours: never delete what we did not make
    return req->respond(Status::YOKAN_ERR_INVALID_ARGS,
                        "\"" + session->staging + "\" exists on " + who +
                            " (left by an interrupted migration? remove it)");
  fs::create_directories(fs::path(session->staging) / "data", ec);
  if (ec)
    return req->respond(Status::YOKAN_ERR_IO,
                        "cannot create \"" + session->staging + "\": " + ec.message());
  incoming = session;
  WireWriter out;
  out.put<uint64_t>(session->token);
  req->respond(Status::YOKAN_SUCCESS, std::move(out.str()));
}

// meta [token u64][file name][offset u64]; body: the bytes at that offset.
void ProviderImpl::handle_migrate_chunk(RequestPtr req) {
  WireReader in(req->meta());
  const uint64_t token = in.get<uint64_t>();
  const std::string name(in.bytes());
  const uint64_t offset = in.get<uint64_t>();
  if (!in.done()) return req->respond(Status::YOKAN_ERR_INVALID_ARGS, "malformed migration chunk");
  std::lock_guard<std::mutex> g(incoming_mu);
  if (!incoming || incoming->token != token || incoming->committed)
    return req->respond(Status::YOKAN_ERR_INVALID_ARGS, "no such migration in progress");
  auto it = incoming->sizes.find(name);
  const std::string_view body = req->body();
  if (it == incoming->sizes.end() || offset > it->second || body.size() > it->second - offset)
    return req->respond(Status::YOKAN_ERR_INVALID_ARGS,
                        "migration chunk outside the announced files: " + name);
  const fs::path path = fs::path(incoming->staging) / "data" / name;
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    return req->respond(Status::YOKAN_ERR_IO,
                        "cannot open \"" + path.string() + "\": " + std::strerror(errno));
  size_t done = 0;
  while (done < body.size()) {
    ssize_t w =
        ::pwrite(fd, body.data() + done, body.size() - done, static_cast<off_t>(offset + done));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    done += static_cast<size_t>(w);
  }
  const int err = errno;
  ::close(fd);
  if (done != body.size())
    return req->respond(Status::YOKAN_ERR_IO,
                        "cannot write \"" + path.string() + "\": " + std::strerror(err));
  req->respond(Status::YOKAN_SUCCESS);
}

// meta [token u64]: restores from the received files and serves them.
void ProviderImpl::handle_migrate_commit(RequestPtr req) {
  WireReader in(req->meta());
  const uint64_t token = in.get<uint64_t>();
  if (!in.done()) return req->respond(Status::YOKAN_ERR_INVALID_ARGS, "malformed migration commit");
  std::shared_ptr<Incoming> session;
  {
    std::lock_guard<std::mutex> g(incoming_mu);
    if (!incoming || incoming->token != token)
      return req->respond(Status::YOKAN_ERR_INVALID_ARGS, "no such migration in progress");
    if (incoming->committed) return req->respond(Status::YOKAN_SUCCESS);  // a re-sent commit
    session = incoming;
  }
  for (const auto& [name, size] : session->sizes) {
    std::error_code ec;
    const auto have = fs::file_size(fs::path(session->staging) / "data" / name, ec);
    if (ec || have != size)
      return req->respond(Status::YOKAN_ERR_INCOMPLETE,
                          "migration incomplete: data/" + name + " was not fully received");
  }
  // On disk before the restore: once it succeeds the source deletes its copy.
  for (const auto& [name, size] : session->sizes) {
    (void)size;
    const std::string path = (fs::path(session->staging) / "data" / name).string();
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    const bool synced = fd >= 0 && ::fsync(fd) == 0;
    if (fd >= 0) ::close(fd);
    if (!synced)
      return req->respond(Status::YOKAN_ERR_IO,
                          "cannot sync \"" + path + "\": " + std::strerror(errno));
  }
  std::string error;
  std::ofstream(fs::path(session->staging) / snapshot::kManifest) << session->manifest;
  Status s = restore(session->staging, session->new_root, session->extra, &error,
                     /*move_data=*/true);
  std::lock_guard<std::mutex> g(incoming_mu);
  if (ok(s)) {
    session->committed = true;
    snapshot::remove_path(session->staging);
    if (session->temp_root) snapshot::remove_path(session->new_root);  // nothing in it
  }
  req->respond(s, ok(s) ? std::string() : error);
}

// meta [token u64]: drops what was received.
void ProviderImpl::handle_migrate_abort(RequestPtr req) {
  WireReader in(req->meta());
  const uint64_t token = in.get<uint64_t>();
  std::lock_guard<std::mutex> g(incoming_mu);
  if (in.done() && incoming && incoming->token == token && !incoming->committed) {
    snapshot::remove_path(incoming->staging);
    incoming.reset();
  }
  req->respond(Status::YOKAN_SUCCESS);
}

}  // namespace yokan
