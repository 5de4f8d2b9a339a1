#include "server/snapshot_io.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

namespace yokan::snapshot {

namespace fs = std::filesystem;

namespace {

Status io_fail(std::string* error, const std::string& what, const std::string& path, int err) {
  if (error) *error = what + " \"" + path + "\": " + std::strerror(err);
  return Status::YOKAN_ERR_IO;
}

// A file descriptor closed on scope exit.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

bool write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// Reads exactly n bytes; false on error or a short file (errno 0 then).
bool read_all(int fd, char* p, size_t n) {
  while (n > 0) {
    ssize_t r = ::read(fd, p, n);
    if (r < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (r == 0) {
      errno = 0;
      return false;
    }
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

Status copy_file(const fs::path& src, const fs::path& dst, std::string* error) {
  Fd in, out;
  in.fd = ::open(src.c_str(), O_RDONLY | O_CLOEXEC);
  if (in.fd < 0) return io_fail(error, "cannot open", src.string(), errno);
  struct stat st {};
  if (fstat(in.fd, &st) != 0) return io_fail(error, "cannot stat", src.string(), errno);
  out.fd = ::open(dst.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, st.st_mode & 0777);
  if (out.fd < 0) return io_fail(error, "cannot create", dst.string(), errno);
  off_t left = st.st_size;
  bool fallback = false;
  while (left > 0 && !fallback) {
    ssize_t n = ::copy_file_range(in.fd, nullptr, out.fd, nullptr, static_cast<size_t>(left), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      // Not across these file systems, or not on this kernel: copy by hand.
      if (errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP || errno == EINVAL) {
        fallback = true;
        break;
      }
      return io_fail(error, "cannot copy into", dst.string(), errno);
    }
    if (n == 0) break;  // the file shrank meanwhile
    left -= n;
  }
  if (fallback) {
    std::vector<char> buf(size_t(1) << 20);
    for (;;) {
      ssize_t r = ::read(in.fd, buf.data(), buf.size());
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return io_fail(error, "cannot read", src.string(), errno);
      if (r == 0) break;
      if (!write_all(out.fd, buf.data(), static_cast<size_t>(r)))
        return io_fail(error, "cannot write", dst.string(), errno);
    }
  }
  // Not synced: a restored copy is left to the OS to write back (the
  // snapshot it came from is the durable copy), so a restore runs at the
  // speed of the page cache rather than of the disk.
  return Status::YOKAN_SUCCESS;
}

bool immutable_file(const fs::path& p) {
  const std::string ext = p.extension().string();
  return ext == ".sst" || ext == ".blob";
}

}  // namespace

Status write_manifest(const std::string& dir, const Manifest& m, std::string* error) {
  json j = {{"yokan_snapshot_version", 1},
            {"type", m.type},
            {"db_config", m.db_config},
            {"files", m.files},
            {"format", m.format}};
  const std::string text = j.dump(2) + "\n";
  const std::string path = (fs::path(dir) / kManifest).string();
  const std::string tmp = path + ".tmp";
  Fd f;
  f.fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (f.fd < 0) return io_fail(error, "cannot create", tmp, errno);
  if (!write_all(f.fd, text.data(), text.size()) || ::fsync(f.fd) != 0)
    return io_fail(error, "cannot write", tmp, errno);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return io_fail(error, "cannot rename", tmp, errno);
  return Status::YOKAN_SUCCESS;
}

Status read_manifest(const std::string& dir, Manifest* m, std::string* error) {
  const fs::path path = fs::path(dir) / kManifest;
  std::ifstream in(path);
  if (!in) {
    if (error) *error = "no snapshot manifest at \"" + path.string() + "\"";
    return Status::YOKAN_ERR_INVALID_ARGS;
  }
  std::stringstream text;
  text << in.rdbuf();
  auto bad = [&](const std::string& why) {
    if (error) *error = "snapshot manifest \"" + path.string() + "\" " + why;
    return Status::YOKAN_ERR_INVALID_CONFIG;
  };
  json j;
  try {
    j = json::parse(text.str());
  } catch (const json::exception& e) {
    return bad(std::string("is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) return bad("is not a JSON object");
  if (!j.contains("yokan_snapshot_version") || j["yokan_snapshot_version"] != 1)
    return bad("has no \"yokan_snapshot_version\": 1");
  if (!j.contains("type") || !j["type"].is_string()) return bad("has no string \"type\"");
  if (!j.contains("db_config") || !j["db_config"].is_object())
    return bad("has no object \"db_config\"");
  if (!j.contains("files") || !j["files"].is_array()) return bad("has no array \"files\"");
  m->type = j["type"].get<std::string>();
  m->db_config = j["db_config"];
  m->files.clear();
  for (const auto& f : j["files"]) {
    if (!f.is_string()) return bad("lists a file that is not a string");
    const std::string name = f.get<std::string>();
    if (name == "/") {  // upstream: "the whole directory"
      m->files.push_back(name);
      continue;
    }
    const fs::path rel(name);
    if (name.empty() || rel.is_absolute() ||
        std::any_of(rel.begin(), rel.end(), [](const fs::path& c) { return c == ".."; }))
      return bad("lists a file outside data/: \"" + name + "\"");
    m->files.push_back(name);
  }
  // A snapshot written by upstream has no "format": its data/ is a copy of
  // the database's own files.
  m->format = j.value("format", std::string("files"));
  if (m->format != "files" && m->format != "dump")
    return bad("has an unknown \"format\" \"" + m->format + "\"");
  for (const auto& name : m->files) {
    if (name == "/") continue;
    std::error_code ec;
    if (!fs::exists(fs::path(dir) / "data" / name, ec)) {
      if (error) *error = "snapshot \"" + dir + "\" is incomplete: data/" + name + " is missing";
      return Status::YOKAN_ERR_CORRUPTION;
    }
  }
  return Status::YOKAN_SUCCESS;
}

Status write_dump(Backend& backend, const std::string& file, bool sync, std::string* error) {
  Fd f;
  f.fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (f.fd < 0) return io_fail(error, "cannot create", file, errno);
  std::string buf;
  const size_t kFlushAt = size_t(4) << 20;
  buf.reserve(kFlushAt + 4096);
  bool failed = false;
  int err = 0;
  auto flush = [&] {
    if (!write_all(f.fd, buf.data(), buf.size())) {
      failed = true;
      err = errno;
    }
    buf.clear();
  };
  auto put_size = [&](uint64_t n) { buf.append(reinterpret_cast<const char*>(&n), sizeof n); };
  Status s = backend.iterate({}, true, true, [&](std::string_view k, std::string_view v) {
    put_size(k.size());
    if (k.size() + v.size() > kFlushAt) {
      // A big pair goes straight to the file rather than through the buffer.
      flush();
      if (!failed && !write_all(f.fd, k.data(), k.size())) failed = true, err = errno;
      put_size(v.size());
      flush();
      if (!failed && !write_all(f.fd, v.data(), v.size())) failed = true, err = errno;
      return !failed;
    }
    buf.append(k.data(), k.size());
    put_size(v.size());
    buf.append(v.data(), v.size());
    if (buf.size() >= kFlushAt) flush();
    return !failed;
  });
  if (!ok(s)) {
    if (error) *error = "cannot read the database to dump it: " + take_failure(s);
    return s;
  }
  if (!failed) flush();
  if (failed) return io_fail(error, "cannot write", file, err);
  if (sync && ::fsync(f.fd) != 0) return io_fail(error, "cannot sync", file, errno);
  return Status::YOKAN_SUCCESS;
}

Status sync_file(const std::string& file, std::string* error) {
  Fd f;
  f.fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd < 0 || ::fsync(f.fd) != 0) return io_fail(error, "cannot sync", file, errno);
  return Status::YOKAN_SUCCESS;
}

Status load_dump(Backend& backend, const std::string& file, std::string* error) {
  Fd f;
  f.fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd < 0) return io_fail(error, "cannot open", file, errno);
  struct stat st {};
  if (fstat(f.fd, &st) != 0) return io_fail(error, "cannot stat", file, errno);
  const uint64_t total = static_cast<uint64_t>(st.st_size);
  // Pairs are batched up to this many bytes per put_batch.
  const size_t kBatchBytes = size_t(4) << 20;
  std::vector<std::string> store;
  std::vector<std::pair<std::string_view, std::string_view>> pairs;
  size_t batch_bytes = 0;
  uint64_t pos = 0;
  auto corrupt = [&](const std::string& why) {
    if (error) *error = "dump \"" + file + "\" is corrupt: " + why;
    return Status::YOKAN_ERR_CORRUPTION;
  };
  auto put_batch = [&]() -> Status {
    pairs.clear();
    for (size_t i = 0; i + 1 < store.size(); i += 2) pairs.emplace_back(store[i], store[i + 1]);
    Status s = pairs.empty() ? Status::YOKAN_SUCCESS : backend.put_batch(pairs);
    if (!ok(s) && error) *error = "cannot load the dump into the database: " + take_failure(s);
    store.clear();
    batch_bytes = 0;
    return s;
  };
  while (pos < total) {
    uint64_t sizes[2];
    for (int i = 0; i < 2; ++i) {
      if (total - pos < sizeof(uint64_t)) return corrupt("truncated record header");
      if (!read_all(f.fd, reinterpret_cast<char*>(&sizes[i]), sizeof(uint64_t)))
        return io_fail(error, "cannot read", file, errno);
      pos += sizeof(uint64_t);
      if (sizes[i] > total - pos) return corrupt("a record runs past the end of the file");
      std::string bytes(sizes[i], '\0');
      if (!read_all(f.fd, bytes.data(), bytes.size()))
        return io_fail(error, "cannot read", file, errno);
      pos += sizes[i];
      batch_bytes += bytes.size();
      store.push_back(std::move(bytes));
    }
    if (store[store.size() - 2].empty()) return corrupt("a record has an empty key");
    if (batch_bytes >= kBatchBytes) {
      Status s = put_batch();
      if (!ok(s)) return s;
    }
  }
  return put_batch();
}

Status copy_tree(const std::string& src, const std::string& dst, bool link_immutable,
                 std::string* error) {
  std::error_code ec;
  fs::create_directories(dst, ec);
  if (ec) {
    if (error) *error = "cannot create directory \"" + dst + "\": " + ec.message();
    return Status::YOKAN_ERR_IO;
  }
  for (auto it = fs::recursive_directory_iterator(src, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    const fs::path rel = fs::relative(it->path(), src);
    const fs::path to = fs::path(dst) / rel;
    if (it->is_directory()) {
      fs::create_directories(to, ec);
      if (ec) break;
      continue;
    }
    if (!it->is_regular_file()) continue;  // sockets, symlinks: not part of a database
    if (link_immutable && immutable_file(it->path()) && ::link(it->path().c_str(), to.c_str()) == 0)
      continue;
    Status s = copy_file(it->path(), to, error);
    if (!ok(s)) return s;
  }
  if (ec) {
    if (error) *error = "cannot copy \"" + src + "\" to \"" + dst + "\": " + ec.message();
    return Status::YOKAN_ERR_IO;
  }
  return Status::YOKAN_SUCCESS;
}

std::vector<std::string> list_files(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
       it.increment(ec))
    if (it->is_regular_file()) out.push_back(fs::relative(it->path(), dir).string());
  std::sort(out.begin(), out.end());
  return out;
}

void remove_path(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
}

void close_and_delete(std::shared_ptr<Backend> old, const std::vector<std::string>& paths) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (old.use_count() > 1 && std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  old.reset();
  for (const auto& p : paths) remove_path(p);
}

bool absent_or_empty(const std::string& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return true;
  return fs::is_directory(dir, ec) && fs::is_empty(dir, ec);
}

namespace {

// Backends whose "path" is a directory that holds the whole database.
const std::set<std::string> kDirectoryBackends = {"rocksdb", "leveldb", "lmdb", "log"};
// Backends whose "path" is one file, with sibling files named path.SUFFIX.
const std::map<std::string, std::vector<std::string>> kFileBackends = {
    {"gdbm", {"", ".lock", ".base", ".journal"}},
    {"tkrzw", {"", ".lock", ".tmp"}},
    {"berkeleydb", {"", ".lock"}},
};

std::string path_of(const json& config) {
  auto it = config.find("path");
  return it != config.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

json relocate(const std::string& type, json config, const std::string& root) {
  if (!config.is_object()) return config;
  const std::string path = path_of(config);
  if (kDirectoryBackends.count(type)) {
    config["path"] = root;
    if (type == "rocksdb") {
      // The checkpoint holds the WAL and every SST itself.
      config["wal_dir"] = "";
      config["db_log_dir"] = "";
      config.erase("db_paths");
    }
  } else if (kFileBackends.count(type)) {
    if (path.empty()) return config;  // in memory (berkeleydb without a file)
    std::string name = fs::path(path).filename().string();
    if (name.empty()) name = "database";
    config["path"] = (fs::path(root) / name).string();
    if (type == "berkeleydb") config["home"] = "";
  } else if (!path.empty()) {
    config["path"] = root;  // a backend this table does not know: a directory
  }
  return config;
}

std::vector<std::string> storage_paths(const std::string& type, const json& config) {
  std::string path = path_of(config);
  if (path.empty()) return {};
  if (type == "berkeleydb") {
    const std::string home = config.value("home", std::string());
    if (!home.empty() && path[0] != '/') path = home + "/yokan/" + path;
  }
  auto file = kFileBackends.find(type);
  if (file == kFileBackends.end()) return {path};
  std::vector<std::string> out;
  for (const auto& suffix : file->second) out.push_back(path + suffix);
  return out;
}

}  // namespace yokan::snapshot
