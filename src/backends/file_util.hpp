// Helpers shared by the file-based backends: directory creation and the lock
// that makes a second open of the same database fail.
#pragma once

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>

#include "yokan/backend.hpp"

namespace yokan {

// Creates `dir` and its parents. Returns YOKAN_ERR_IO with a message on failure.
inline Status make_directories(const std::string& dir, std::string* error) {
  if (dir.empty()) return Status::YOKAN_SUCCESS;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    if (error) *error = "cannot create directory \"" + dir + "\": " + ec.message();
    return Status::YOKAN_ERR_IO;
  }
  return Status::YOKAN_SUCCESS;
}

// Creates the parent directory of the file `path`, if it has one.
inline Status make_parent_directories(const std::string& path, std::string* error) {
  return make_directories(std::filesystem::path(path).parent_path().string(), error);
}

// The message used when a library reports that another handle holds its lock.
inline std::string already_open_message(const std::string& path) {
  return "path \"" + path + "\" is already open by another provider";
}

// An flock() on a lock file, held for the lifetime of the object.
//
// flock locks belong to the open file description, so two open() calls of the
// same file conflict even inside one process: this catches both a second
// provider in the same process and one in another process. The lock file is
// never deleted (unlinking it would let a concurrent opener lock a fresh inode).
class PathLock {
 public:
  // `what` names the database in the message ("path ... is already open ...").
  static Status acquire(const std::string& lock_file, const std::string& what, bool exclusive,
                        std::unique_ptr<PathLock>* out, std::string* error) {
    int fd = ::open(lock_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      if (error) *error = "cannot open lock file \"" + lock_file + "\": " + std::strerror(errno);
      return errno == EACCES ? Status::YOKAN_ERR_PERMISSION : Status::YOKAN_ERR_IO;
    }
    if (::flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0) {
      int err = errno;
      ::close(fd);
      if (err == EWOULDBLOCK) {
        if (error) *error = already_open_message(what);
        return Status::YOKAN_ERR_PERMISSION;
      }
      if (error) *error = "cannot lock \"" + lock_file + "\": " + std::strerror(err);
      return Status::YOKAN_ERR_IO;
    }
    out->reset(new PathLock(fd));
    return Status::YOKAN_SUCCESS;
  }

  ~PathLock() { ::close(fd_); }  // closing the last fd releases the lock
  PathLock(const PathLock&) = delete;
  PathLock& operator=(const PathLock&) = delete;

 private:
  explicit PathLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace yokan
