// Crash safety for the gdbm backend: a verified base copy plus a redo journal.
//
// Why: gdbm rewrites buckets, its directory and its header in place, so a
// SIGKILL in the middle of a store can leave a file that opens but answers
// "corrupted" for every key. gdbm 1.21+'s crash tolerance would fix that but
// needs reflink copies (XFS/Btrfs); ext4 and tmpfs have none.
//
// The scheme (three files next to the database `P`):
//   P.base     a copy of P taken when P was known to be consistent;
//   P.journal  an 8-byte header, then one record per write call (a whole
//              batch is one record) since that copy: [magic][checksum][length]
//              [ops], each op [kind u8][key len u32][value len u32][key][value].
// A write call appends its record with one write(2) *before* touching P, and is
// acknowledged only after that (with fdatasync when "sync" is on). A non-empty
// journal means P may be mid-update: opening then rebuilds P from P.base and
// replays every intact record (a torn last record was never acknowledged).
// Puts and erases replay idempotently in order, so a replay on top of a base
// that already holds some of them gives the same result.
//
// Not thread-safe: the gdbm backend calls it under its own mutex.
#pragma once

#include <fcntl.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace yokan {
namespace gdbm_journal {

enum Kind : uint8_t { kPut = 1, kErase = 2 };

struct Op {
  Kind kind;
  std::string_view key;
  std::string_view value;
};

constexpr char kHeader[8] = {'Y', 'K', 'G', 'J', 'R', 'N', 'L', '1'};
constexpr uint32_t kRecordMagic = 0x4a474b59;  // "YKGJ"

// FNV-1a: detects a torn record; this is not a defence against tampering.
inline uint32_t checksum(const char* p, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<unsigned char>(p[i])) * 16777619u;
  return h;
}

// Moves all `n` bytes at `off` with pread or pwrite (`io`), retrying short
// transfers and EINTR: one syscall per record (no lseek) in the common case.
template <typename Buf, typename Io>
inline bool io_all(int fd, Buf* p, size_t n, off_t off, Io io) {
  while (n > 0) {
    ssize_t r = io(fd, p, n, off);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
    off += r;
  }
  return true;
}

inline bool write_all(int fd, const char* p, size_t n, off_t off) {
  return io_all(fd, p, n, off, ::pwrite);
}

inline bool read_all(int fd, char* p, size_t n, off_t off) {
  return io_all(fd, p, n, off, ::pread);
}

inline bool fsync_dir_of(const std::string& path) {
  std::string dir =
      path.substr(0, path.find_last_of('/') == std::string::npos ? 0 : path.find_last_of('/'));
  if (dir.empty()) dir = path.find('/') == 0 ? "/" : ".";
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

// Copies `from` to `to` through `to`.tmp + fsync + rename, so `to` is always
// either the old copy or the whole new one. false with errno set on failure.
inline bool copy_file_atomically(const std::string& from, const std::string& to) {
  const std::string tmp = to + ".tmp";
  int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return false;
  int out = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out < 0) {
    int e = errno;
    ::close(in);
    errno = e;
    return false;
  }
  bool ok = true;
  struct stat st {};
  if (::fstat(in, &st) != 0) ok = false;
  off_t left = ok ? st.st_size : 0;
  while (ok && left > 0) {
    ssize_t r = ::sendfile(out, in, nullptr, static_cast<size_t>(left));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0)
      ok = false;
    else
      left -= r;
  }
  if (ok && ::fsync(out) != 0) ok = false;
  int e = errno;
  ::close(in);
  ::close(out);
  if (ok && ::rename(tmp.c_str(), to.c_str()) != 0) ok = false;
  if (ok) ok = fsync_dir_of(to);
  if (!ok) {
    e = errno;
    ::unlink(tmp.c_str());
    errno = e;
  }
  return ok;
}

// The journal file. Every method returns false with errno set on failure.
class Journal {
 public:
  ~Journal() {
    if (fd_ >= 0) ::close(fd_);
  }

  bool open(const std::string& file) {
    fd_ = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) return false;
    struct stat st {};
    if (::fstat(fd_, &st) != 0) return false;
    size_ = static_cast<uint64_t>(st.st_size);
    return true;
  }

  // True when P may differ from P.base (some write call began since the copy).
  bool dirty() const { return size_ > 0; }
  uint64_t size() const { return size_; }

  // Calls `apply` on every op of every intact record, in order; stops at the
  // first torn or foreign record. false only on a read error or when apply fails.
  bool replay(const std::function<bool(const Op&)>& apply) const {
    uint64_t pos = sizeof kHeader;
    std::string body;
    while (pos + 16 <= size_) {
      uint32_t magic, sum;
      uint64_t len;
      char head[16];
      if (!read_all(fd_, head, sizeof head, static_cast<off_t>(pos))) return false;
      std::memcpy(&magic, head, 4);
      std::memcpy(&sum, head + 4, 4);
      std::memcpy(&len, head + 8, 8);
      if (magic != kRecordMagic || len > size_ - pos - 16) break;
      body.resize(len);
      if (!read_all(fd_, body.data(), len, static_cast<off_t>(pos + 16))) return false;
      if (checksum(body.data(), len) != sum) break;
      std::vector<Op> ops;
      if (!decode(body, &ops)) break;
      for (const Op& op : ops)
        if (!apply(op)) return false;
      pos += 16 + len;
    }
    return true;
  }

  // Appends one record holding `ops`: one write(2), then fdatasync if `sync`.
  // On failure the journal is cut back to where it was.
  bool append(const std::vector<Op>& ops, bool sync) {
    record_.clear();
    if (size_ == 0) record_.append(kHeader, sizeof kHeader);
    const size_t head_at = record_.size();
    record_.append(16, '\0');
    for (const Op& op : ops) {
      const uint32_t k = static_cast<uint32_t>(op.key.size());
      const uint32_t v = static_cast<uint32_t>(op.value.size());
      record_.push_back(static_cast<char>(op.kind));
      record_.append(reinterpret_cast<const char*>(&k), 4);
      record_.append(reinterpret_cast<const char*>(&v), 4);
      record_.append(op.key).append(op.value);
    }
    const uint64_t len = record_.size() - head_at - 16;
    const uint32_t sum = checksum(record_.data() + head_at + 16, len);
    std::memcpy(record_.data() + head_at, &kRecordMagic, 4);
    std::memcpy(record_.data() + head_at + 4, &sum, 4);
    std::memcpy(record_.data() + head_at + 8, &len, 8);
    const uint64_t before = size_;
    if (!write_all(fd_, record_.data(), record_.size(), static_cast<off_t>(before)) ||
        (sync && ::fdatasync(fd_) != 0)) {
      int e = errno;
      (void)!::ftruncate(fd_, static_cast<off_t>(before));
      errno = e;
      return false;
    }
    last_start_ = before;
    size_ += record_.size();
    return true;
  }

  // Forgets the last appended record (its call failed and was undone), but
  // keeps the journal dirty: P itself may hold part of it until rebuilt.
  bool drop_last() {
    const uint64_t keep = last_start_ < sizeof kHeader ? sizeof kHeader : last_start_;
    if (::ftruncate(fd_, static_cast<off_t>(keep)) != 0) return false;
    size_ = keep;
    return true;
  }

  // Empties the journal: P and P.base are the same again.
  bool clear() {
    if (::ftruncate(fd_, 0) != 0 || ::fsync(fd_) != 0) return false;
    size_ = 0;
    return true;
  }

 private:
  static bool decode(std::string_view body, std::vector<Op>* ops) {
    size_t p = 0;
    while (p < body.size()) {
      if (body.size() - p < 9) return false;
      uint8_t kind = static_cast<uint8_t>(body[p]);
      uint32_t k, v;
      std::memcpy(&k, body.data() + p + 1, 4);
      std::memcpy(&v, body.data() + p + 5, 4);
      p += 9;
      if ((kind != kPut && kind != kErase) || uint64_t(k) + v > body.size() - p) return false;
      ops->push_back({static_cast<Kind>(kind), body.substr(p, k), body.substr(p + k, v)});
      p += uint64_t(k) + v;
    }
    return true;
  }

  int fd_ = -1;
  uint64_t size_ = 0;
  uint64_t last_start_ = 0;
  std::string record_;
};

}  // namespace gdbm_journal
}  // namespace yokan
