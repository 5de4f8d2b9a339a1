// log: a persistent document store (collections only, like upstream's `log`).
//
// One append-only file, <path>/yokan.log, of records
//   [magic u32][op u8][key length u32][value length u64][key][value]
// and an in-memory ordered index from each key to where its latest value lies.
// Opening the database replays the file to rebuild the index.
//
// Acknowledged: a put or erase is one write() of its whole record before it
// returns, so it survives a SIGKILL of the process (the data is in the OS page
// cache); with "sync": true it is also fdatasync()ed, for machine crashes. A
// record torn by a crash mid-write can only be the last one: opening cuts it off.
// Space of overwritten or erased records is not reclaimed (no compaction yet).
//
// A full disk: an append that fails is cut back off the file and leaves the
// index as it was; the error says why (strerror: "No space left on device").
// Writes are also kept from filling the disk (SpaceGuard: 1 MiB plus twice
// the payload stays free), so that the small writes of a document operation
// (an erase record, then the collection's size) do not fail half-way.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <shared_mutex>

#include "config_reader.hpp"
#include "file_util.hpp"
#include "space_guard.hpp"

namespace yokan {

namespace {

constexpr uint32_t kRecordMagic = 0x594b4c31;  // "YKL1"
enum : uint8_t { kOpPut = 1, kOpErase = 2 };

#pragma pack(push, 1)
struct RecordHeader {
  uint32_t magic;
  uint8_t op;
  uint32_t key_len;
  uint64_t value_len;
};
#pragma pack(pop)

struct Location {
  uint64_t offset;  // of the value in the file
  uint64_t size;
};

class LogBackend final : public Backend {
 public:
  LogBackend(json config, int fd, bool sync, std::unique_ptr<PathLock> lock)
      : config_(std::move(config)),
        fd_(fd),
        sync_(sync),
        lock_(std::move(lock)),
        space_(config_["path"].get<std::string>(), uint64_t(1) << 20) {}
  ~LogBackend() override { ::close(fd_); }

  // Replays the file; cuts off a torn last record.
  Status load(std::string* error) {
    struct stat st {};
    if (fstat(fd_, &st) != 0) return io_error("stat", error);
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    uint64_t pos = 0;
    std::string key;
    while (pos + sizeof(RecordHeader) <= size) {
      RecordHeader h;
      if (!read_at(&h, sizeof h, pos)) return io_error("read", error);
      uint64_t body = uint64_t(h.key_len) + h.value_len;
      if (h.magic != kRecordMagic || (h.op != kOpPut && h.op != kOpErase) || h.value_len > size ||
          body > size - pos - sizeof h)
        break;  // torn or foreign tail
      key.resize(h.key_len);
      if (!read_at(key.data(), h.key_len, pos + sizeof h)) return io_error("read", error);
      if (h.op == kOpPut)
        index_[key] = {pos + sizeof h + h.key_len, h.value_len};
      else
        index_.erase(key);
      pos += sizeof h + body;
    }
    if (pos != size && ftruncate(fd_, static_cast<off_t>(pos)) != 0)
      return io_error("truncate", error);
    end_ = pos;
    return Status::YOKAN_SUCCESS;
  }

  BackendTraits traits() const override {
    BackendTraits t{true, true, true};
    t.key_value = false;
    return t;
  }
  json config() const override { return config_; }

  Status put(std::string_view key, std::string_view value) override {
    if (Status s = may_write(key.size() + value.size()); !ok(s)) return s;
    std::unique_lock<std::shared_mutex> g(mu_);
    return append(kOpPut, key, value);
  }

  Status put_batch(
      const std::vector<std::pair<std::string_view, std::string_view>>& pairs) override {
    uint64_t bytes = 0;
    for (const auto& [key, value] : pairs) bytes += key.size() + value.size();
    if (Status s = may_write(bytes); !ok(s)) return s;
    std::unique_lock<std::shared_mutex> g(mu_);
    for (const auto& [key, value] : pairs) {
      Status s = append(kOpPut, key, value);
      if (!ok(s)) return s;
    }
    return Status::YOKAN_SUCCESS;
  }

  Status get(std::string_view key, const ValueVisitor& visit) override {
    std::shared_lock<std::shared_mutex> g(mu_);
    auto it = index_.find(key);
    if (it == index_.end()) return Status::YOKAN_ERR_KEY_NOT_FOUND;
    std::string value(it->second.size, '\0');
    if (!read_at(value.data(), value.size(), it->second.offset)) return Status::YOKAN_ERR_IO;
    visit(value);
    return Status::YOKAN_SUCCESS;
  }

  Status length(std::string_view key, size_t* size) override {
    std::shared_lock<std::shared_mutex> g(mu_);
    auto it = index_.find(key);
    if (it == index_.end()) return Status::YOKAN_ERR_KEY_NOT_FOUND;
    *size = it->second.size;
    return Status::YOKAN_SUCCESS;
  }

  Status erase(std::string_view key) override {
    if (Status s = may_write(key.size()); !ok(s)) return s;
    std::unique_lock<std::shared_mutex> g(mu_);
    if (index_.find(key) == index_.end()) return Status::YOKAN_SUCCESS;
    return append(kOpErase, key, {});
  }

  Status count(uint64_t* n) override {
    std::shared_lock<std::shared_mutex> g(mu_);
    *n = index_.size();
    return Status::YOKAN_SUCCESS;
  }

  Status iterate(std::string_view from, bool inclusive, bool want_values,
                 const PairVisitor& visit) override {
    std::shared_lock<std::shared_mutex> g(mu_);
    auto it = index_.begin();
    if (!from.empty()) it = inclusive ? index_.lower_bound(from) : index_.upper_bound(from);
    std::string value;
    for (; it != index_.end(); ++it) {
      value.clear();
      if (want_values) {
        value.resize(it->second.size);
        if (!read_at(value.data(), value.size(), it->second.offset)) return Status::YOKAN_ERR_IO;
      }
      if (!visit(it->first, value)) break;
    }
    return Status::YOKAN_SUCCESS;
  }

  Status flush() override {
    std::unique_lock<std::shared_mutex> g(mu_);
    return ::fdatasync(fd_) == 0 ? Status::YOKAN_SUCCESS : Status::YOKAN_ERR_IO;
  }

 private:
  // Whether a write of about `payload` bytes may be appended now.
  Status may_write(uint64_t payload) {
    uint64_t free = 0;
    if (!space_.allows(payload, &free))
      return fail(Status::YOKAN_ERR_IO, SpaceGuard::refusal("log", free, payload));
    return Status::YOKAN_SUCCESS;
  }

  // One write() per record (header, key and value gathered), then the index.
  Status append(uint8_t op, std::string_view key, std::string_view value) {
    RecordHeader h{kRecordMagic, op, static_cast<uint32_t>(key.size()), value.size()};
    if (key.size() > UINT32_MAX) return Status::YOKAN_ERR_INVALID_ARGS;
    std::string record;
    record.reserve(sizeof h + key.size() + value.size());
    record.append(reinterpret_cast<const char*>(&h), sizeof h).append(key).append(value);
    errno = 0;
    if (!write_at(record.data(), record.size(), end_)) {
      const int err = errno ? errno : EIO;
      // Cut back whatever part of the record made it, so the file stays valid.
      (void)!ftruncate(fd_, static_cast<off_t>(end_));
      return fail(Status::YOKAN_ERR_IO,
                  std::string("log: cannot append a record: ") + std::strerror(err));
    }
    if (sync_ && ::fdatasync(fd_) != 0)
      return fail(Status::YOKAN_ERR_IO, std::string("log: fdatasync: ") + std::strerror(errno));
    if (op == kOpPut)
      index_[std::string(key)] = {end_ + sizeof h + key.size(), value.size()};
    else
      index_.erase(std::string(key));
    end_ += record.size();
    return Status::YOKAN_SUCCESS;
  }

  bool read_at(void* dst, size_t n, uint64_t offset) const {
    return whole_io(::pread, fd_, static_cast<char*>(dst), n, offset);
  }
  bool write_at(const void* src, size_t n, uint64_t offset) {
    return whole_io(::pwrite, fd_, static_cast<const char*>(src), n, offset);
  }
  // pread/pwrite until all n bytes have moved: short transfers continue where
  // they stopped, EINTR is retried; false on an error or end of file.
  template <typename Io, typename Bytes>
  static bool whole_io(Io io, int fd, Bytes* p, size_t n, uint64_t offset) {
    while (n > 0) {
      ssize_t r = io(fd, p, n, static_cast<off_t>(offset));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      p += r;
      n -= static_cast<size_t>(r);
      offset += static_cast<uint64_t>(r);
    }
    return true;
  }

  static Status io_error(const char* what, std::string* error) {
    if (error) *error = std::string("log: ") + what + ": " + std::strerror(errno);
    return Status::YOKAN_ERR_IO;
  }

  json config_;
  int fd_;
  bool sync_;
  std::unique_ptr<PathLock> lock_;
  SpaceGuard space_;
  std::shared_mutex mu_;
  std::map<std::string, Location, std::less<>> index_;
  uint64_t end_ = 0;
};

Status open_log(const json& config, std::unique_ptr<Backend>* out, std::string* error) {
  std::string path;
  bool create = true, error_if_exists = false, sync = false;
  json completed;
  Status st = with_config_errors(error, [&] {
    ConfigReader r(config, "log config");
    path = r.require_string("path");
    if (path.empty()) throw ConfigError("log config: \"path\" must not be empty");
    create = r.get_bool("create_if_missing", true);
    error_if_exists = r.get_bool("error_if_exists", false);
    sync = r.get_bool("sync", false);
    // Accepted for compatibility with upstream's chunked log; this log is one file.
    r.get_uint("chunk_size", 10485760);
    r.get_uint("cache_size", 16);
    r.get_bool("use_lock", false);
    r.get_double("msync_interval", 0);
    completed = r.finish();
    return Status::YOKAN_SUCCESS;
  });
  if (!ok(st)) return st;

  std::error_code ec;
  bool exists = std::filesystem::is_directory(path, ec);
  if (exists && error_if_exists) {
    if (error) *error = "log: \"" + path + "\" already exists (error_if_exists)";
    return Status::YOKAN_ERR_PERMISSION;
  }
  if (!exists) {
    if (!create) {
      if (error) *error = "log: \"" + path + "\" does not exist (create_if_missing is false)";
      return Status::YOKAN_ERR_PERMISSION;
    }
    st = make_directories(path, error);
    if (!ok(st)) return st;
  }
  std::unique_ptr<PathLock> lock;
  st = PathLock::acquire(path + "/yokan.lock", path, true, &lock, error);
  if (!ok(st)) return st;
  std::string file = path + "/yokan.log";
  int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    if (error) *error = "log: cannot open \"" + file + "\": " + std::strerror(errno);
    return errno == EACCES ? Status::YOKAN_ERR_PERMISSION : Status::YOKAN_ERR_IO;
  }
  auto backend = std::make_unique<LogBackend>(std::move(completed), fd, sync, std::move(lock));
  st = backend->load(error);
  if (!ok(st)) return st;
  *out = std::move(backend);
  return Status::YOKAN_SUCCESS;
}

}  // namespace

// Exceptions escaping the factory are mapped to statuses by the registry.
void register_backend_log(std::map<std::string, BackendFactory>& r) { r["log"] = open_log; }

}  // namespace yokan
