// Status codes, modes and the exception type shared by every part of mochi-yokan.
//
// Inside the core every function returns a Status; only the client API (and the
// Python layer on top of it) turns a non-success Status into yokan::Exception.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace yokan {

enum class Status : int32_t {
#define YOKAN_ERROR(name, value, message) name = value,
#include "yokan/errors.def"
#undef YOKAN_ERROR
};

// Fixed message text for a status (never null; unknown codes give "Unknown error").
const char* status_message(Status s) noexcept;
// Symbolic name of a status, e.g. "YOKAN_ERR_KEY_NOT_FOUND".
const char* status_name(Status s) noexcept;

inline bool ok(Status s) noexcept { return s == Status::YOKAN_SUCCESS; }

namespace mode {
#define YOKAN_MODE(name, value, exported) constexpr int32_t name = value;
#include "yokan/modes.def"
#undef YOKAN_MODE
}  // namespace mode

// Whether LUA_FILTER is available in this build.
bool built_with_lua() noexcept;

// Flag pairs that the client rejects with YOKAN_ERR_MODE before sending anything.
bool mode_is_compatible(int32_t m) noexcept;

// Size sentinels of the C API; the Python layer maps them to None / -1.
constexpr uint64_t KEY_NOT_FOUND = UINT64_MAX;
constexpr uint64_t SIZE_TOO_SMALL = UINT64_MAX - 1;
constexpr uint64_t NO_MORE_KEYS = UINT64_MAX - 2;

// Thrown by the C++ client API and by Provider construction. what() is the
// fixed message of the code, or a more specific message when one is given.
class Exception : public std::runtime_error {
 public:
  explicit Exception(Status code) : std::runtime_error(status_message(code)), code_(code) {}
  Exception(Status code, const std::string& detail)
      : std::runtime_error(detail.empty() ? std::string(status_message(code)) : detail),
        code_(code) {}
  Status code() const noexcept { return code_; }

 private:
  Status code_;
};

inline void check(Status s) {
  if (!ok(s)) throw Exception(s);
}

}  // namespace yokan
