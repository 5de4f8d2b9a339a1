// log: a persistent document store (collections only, like upstream's `log`).
//
// One append-only file, <path>/yokan.log, of records
//   [magic u32][op u8][key length u32][value length u64][key][value]
// and an in-memory ordered index from each key to where its latest value lies.
// Opening the database replays the file to rebuild the index.
//
// A batch (write_batch, put_batch, erase_batch: a collection's store_multi,
// update or erase) is one record group, written with one write():
//   [magic][op = group][key length = record count][value length = payload bytes]
//   [payload: the batch's put/erase records][commit magic u32][crc32c u32]
// where the CRC covers the group's header and payload. Opening applies a group
// only when its commit marker and checksum are there and every record inside
// parses; otherwise it is a torn tail and is cut off, so a batch is replayed
// whole or not at all. The index changes only after the whole group is written.
//
// Acknowledged: a put, erase or batch is one write() of its whole record before it
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

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <vector>

#include "config_reader.hpp"
#include "file_util.hpp"
#include "space_guard.hpp"

namespace yokan {

namespace {

constexpr uint32_t kRecordMagic = 0x594b4c31;  // "YKL1"
constexpr uint32_t kCommitMagic = 0x594b4c43;  // "YKLC": ends a complete group
enum : uint8_t { kOpPut = 1, kOpErase = 2, kOpGroup = 3 };

#pragma pack(push, 1)
struct RecordHeader {
  uint32_t magic;
  uint8_t op;
  uint32_t key_len;
  uint64_t value_len;
};
#pragma pack(pop)

struct GroupTrailer {
  uint32_t magic;
  uint32_t crc;
};

// CRC-32C (Castagnoli), one table lookup per byte: a group is summed once
// when written and once when the file is opened; next to the write() of the
// group (a copy of the same bytes into the page cache) this is small.
uint32_t crc32c(uint32_t crc, const void* data, size_t n) {
  static const auto table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

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
      if (h.magic == kRecordMagic && h.op == kOpGroup) {
        uint64_t next = 0;
        Status s = replay_group(h, pos, size, &next);
        if (s == Status::YOKAN_ERR_IO) return io_error("read", error);
        if (!ok(s)) break;  // torn or uncommitted group: the tail ends here
        pos = next;
        continue;
      }
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
    t.atomic_batches = true;
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
    return write_batch({}, pairs);
  }

  // One record group: written whole (or cut back off) before the index changes.
  Status write_batch(
      const std::vector<std::string_view>& erases,
      const std::vector<std::pair<std::string_view, std::string_view>>& puts) override {
    if (erases.size() + puts.size() == 1) {  // one record is already all or nothing
      if (puts.empty()) return erase(erases[0]);
      return put(puts[0].first, puts[0].second);
    }
    if (erases.empty() && puts.empty()) return Status::YOKAN_SUCCESS;
    uint64_t bytes = 0;
    for (auto key : erases) bytes += key.size();
    for (const auto& [key, value] : puts) bytes += key.size() + value.size();
    if (Status s = may_write(bytes); !ok(s)) return s;
    std::unique_lock<std::shared_mutex> g(mu_);
    return append_group(erases, puts);
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

  // Writes `record` at the end of the file (and syncs it with "sync"). On a
  // failure whatever part of it made it is cut back off, so the file ends
  // where it did and nothing of the record is replayed later.
  Status write_record(const std::string& record) {
    errno = 0;
    if (!write_at(record.data(), record.size(), end_)) {
      const int err = errno ? errno : EIO;
      (void)!ftruncate(fd_, static_cast<off_t>(end_));
      return fail(Status::YOKAN_ERR_IO,
                  std::string("log: cannot append a record: ") + std::strerror(err));
    }
    if (sync_ && ::fdatasync(fd_) != 0) {
      const int err = errno;
      // Not acknowledged, so not kept: cut it off (best effort).
      (void)!ftruncate(fd_, static_cast<off_t>(end_));
      return fail(Status::YOKAN_ERR_IO, std::string("log: fdatasync: ") + std::strerror(err));
    }
    return Status::YOKAN_SUCCESS;
  }

  // One write() per record (header, key and value gathered), then the index.
  Status append(uint8_t op, std::string_view key, std::string_view value) {
    RecordHeader h{kRecordMagic, op, static_cast<uint32_t>(key.size()), value.size()};
    if (key.size() > UINT32_MAX) return Status::YOKAN_ERR_INVALID_ARGS;
    std::string record;
    record.reserve(sizeof h + key.size() + value.size());
    record.append(reinterpret_cast<const char*>(&h), sizeof h).append(key).append(value);
    if (Status s = write_record(record); !ok(s)) return s;
    if (op == kOpPut)
      index_[std::string(key)] = {end_ + sizeof h + key.size(), value.size()};
    else
      index_.erase(std::string(key));
    end_ += record.size();
    return Status::YOKAN_SUCCESS;
  }

  // Writes erases then puts as one group at the end of the file, then applies
  // them to the index; on a failed write nothing changes.
  Status append_group(const std::vector<std::string_view>& erases,
                      const std::vector<std::pair<std::string_view, std::string_view>>& puts) {
    uint64_t payload = 0;
    for (auto key : erases) {
      if (key.size() > UINT32_MAX) return Status::YOKAN_ERR_INVALID_ARGS;
      payload += sizeof(RecordHeader) + key.size();
    }
    for (const auto& [key, value] : puts) {
      if (key.size() > UINT32_MAX) return Status::YOKAN_ERR_INVALID_ARGS;
      payload += sizeof(RecordHeader) + key.size() + value.size();
    }
    const uint64_t count = erases.size() + puts.size();
    if (count > UINT32_MAX) return Status::YOKAN_ERR_INVALID_ARGS;
    RecordHeader gh{kRecordMagic, kOpGroup, static_cast<uint32_t>(count), payload};
    std::string group;
    group.reserve(sizeof gh + payload + sizeof(GroupTrailer));
    group.append(reinterpret_cast<const char*>(&gh), sizeof gh);
    auto add = [&group](uint8_t op, std::string_view key, std::string_view value) {
      RecordHeader h{kRecordMagic, op, static_cast<uint32_t>(key.size()), value.size()};
      group.append(reinterpret_cast<const char*>(&h), sizeof h).append(key).append(value);
    };
    for (auto key : erases) add(kOpErase, key, {});
    for (const auto& [key, value] : puts) add(kOpPut, key, value);
    GroupTrailer t{kCommitMagic, crc32c(0, group.data(), group.size())};
    group.append(reinterpret_cast<const char*>(&t), sizeof t);
    if (Status s = write_record(group); !ok(s)) return s;
    // Offsets of the values, as replay_group computes them.
    uint64_t at = end_ + sizeof gh;
    for (auto key : erases) {
      index_.erase(std::string(key));
      at += sizeof(RecordHeader) + key.size();
    }
    for (const auto& [key, value] : puts) {
      at += sizeof(RecordHeader) + key.size();
      index_[std::string(key)] = {at, value.size()};
      at += value.size();
    }
    end_ += group.size();
    return Status::YOKAN_SUCCESS;
  }

  // Applies the group whose header `gh` is at `pos` to the index if it is
  // complete (commit marker, checksum, every record inside well formed);
  // *next is the offset after it. YOKAN_ERR_CORRUPTION: torn or foreign, the
  // index is unchanged; YOKAN_ERR_IO: the file could not be read.
  Status replay_group(const RecordHeader& gh, uint64_t pos, uint64_t size, uint64_t* next) {
    const uint64_t room = size - pos - sizeof gh;
    if (room < sizeof(GroupTrailer) || gh.value_len > room - sizeof(GroupTrailer))
      return Status::YOKAN_ERR_CORRUPTION;
    const uint64_t total = sizeof gh + gh.value_len + sizeof(GroupTrailer);
    std::string group(total, '\0');
    if (!read_at(group.data(), total, pos)) return Status::YOKAN_ERR_IO;
    GroupTrailer t;
    std::memcpy(&t, group.data() + total - sizeof t, sizeof t);
    if (t.magic != kCommitMagic || t.crc != crc32c(0, group.data(), total - sizeof t))
      return Status::YOKAN_ERR_CORRUPTION;
    // Parse everything before applying anything.
    struct Op {
      uint8_t op;
      std::string_view key;
      uint64_t value_at, value_len;
    };
    std::vector<Op> ops;
    ops.reserve(gh.key_len);
    uint64_t at = sizeof gh;
    const uint64_t end = sizeof gh + gh.value_len;
    while (at < end) {
      RecordHeader h;
      if (end - at < sizeof h) return Status::YOKAN_ERR_CORRUPTION;
      std::memcpy(&h, group.data() + at, sizeof h);
      at += sizeof h;
      if (h.magic != kRecordMagic || (h.op != kOpPut && h.op != kOpErase) || h.key_len > end - at ||
          h.value_len > end - at - h.key_len)
        return Status::YOKAN_ERR_CORRUPTION;
      ops.push_back({h.op, std::string_view(group.data() + at, h.key_len), pos + at + h.key_len,
                     h.value_len});
      at += uint64_t(h.key_len) + h.value_len;
    }
    if (ops.size() != gh.key_len) return Status::YOKAN_ERR_CORRUPTION;
    for (const Op& o : ops) {
      if (o.op == kOpPut)
        index_[std::string(o.key)] = {o.value_at, o.value_len};
      else
        index_.erase(std::string(o.key));
    }
    *next = pos + total;
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
