#include "yokan/common.hpp"

namespace yokan {

const char* status_message(Status s) noexcept {
  switch (s) {
#define YOKAN_ERROR(name, value, message) \
  case Status::name:                      \
    return message;
#include "yokan/errors.def"
#undef YOKAN_ERROR
  }
  return "Unknown error";
}

const char* status_name(Status s) noexcept {
  switch (s) {
#define YOKAN_ERROR(name, value, message) \
  case Status::name:                      \
    return #name;
#include "yokan/errors.def"
#undef YOKAN_ERROR
  }
  return "YOKAN_ERR_UNKNOWN";
}

bool mode_is_compatible(int32_t m) noexcept {
  auto both = [m](int32_t a, int32_t b) { return (m & a) && (m & b); };
  using namespace mode;
  return !(both(APPEND, NEW_ONLY) || both(NEW_ONLY, EXIST_ONLY) || both(SUFFIX, LUA_FILTER) ||
           both(LIB_FILTER, SUFFIX) || both(LUA_FILTER, LIB_FILTER));
}

}  // namespace yokan
