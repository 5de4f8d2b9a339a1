// RocksDB's info log (the LOG file), written so that a full disk cannot crash
// the process.
//
// Why not RocksDB's own logger: it writes through a WritableFileWriter, and
// once one append has failed (ENOSPC) the next one trips an assert() in
// WritableFileWriter (Debian's librocksdb keeps assertions on), which aborts
// the provider on the first log line after the disk fills - and RocksDB logs
// precisely when a write fails. This logger writes each line with one
// write(2) and drops lines that do not fit: a lost log line is acceptable, a
// crash is not.
//
// Naming follows RocksDB's for a log in the database directory, so that
// RocksDB's own clean-up of old info logs (keep_log_file_num) applies there:
// `<dir>/LOG`, the previous one renamed to `<dir>/LOG.old.<microseconds>` at
// open. (With db_log_dir set, the same names are used in that directory.)
//
// Thread-safety: Logv may be called from any RocksDB thread; each line is one
// write() on an O_APPEND descriptor, so lines never interleave.
#pragma once

#include <fcntl.h>
#include <rocksdb/env.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <string>

namespace yokan {

class TolerantLogger final : public rocksdb::Logger {
 public:
  // Opens `dir`/LOG for appending (after moving an existing one aside). A
  // file that cannot be created leaves a logger that drops every line.
  TolerantLogger(const std::string& dir, rocksdb::InfoLogLevel level) : rocksdb::Logger(level) {
    const std::string file = dir + "/LOG";
    if (::access(file.c_str(), F_OK) == 0) {
      const std::string old = file + ".old." + std::to_string(now_micros());
      (void)::rename(file.c_str(), old.c_str());
    }
    fd_ = ::open(file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  }
  ~TolerantLogger() override {
    if (fd_ >= 0) ::close(fd_);
  }

  using rocksdb::Logger::Logv;  // the leveled overload filters, then calls this one
  void Logv(const char* format, va_list ap) override {
    if (fd_ < 0) return;
    char line[4096];
    const uint64_t us = now_micros();
    const time_t secs = static_cast<time_t>(us / 1000000);
    struct tm t;
    localtime_r(&secs, &t);
    int n = std::snprintf(line, sizeof line, "%04d/%02d/%02d-%02d:%02d:%02d.%06llu ",
                          t.tm_year + 1900, t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
                          static_cast<unsigned long long>(us % 1000000));
    if (n < 0) return;
    int m = std::vsnprintf(line + n, sizeof line - n - 1, format, ap);
    if (m < 0) return;
    size_t len = std::min(sizeof line - 2, size_t(n) + size_t(m));  // a long line is cut
    line[len++] = '\n';
    (void)!::write(fd_, line, len);  // a line that does not fit is dropped
  }

 private:
  static uint64_t now_micros() {
    struct timeval tv;
    ::gettimeofday(&tv, nullptr);
    return uint64_t(tv.tv_sec) * 1000000 + uint64_t(tv.tv_usec);
  }

  int fd_ = -1;
};

}  // namespace yokan
