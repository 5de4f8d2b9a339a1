#include "yokan/backend.hpp"

namespace yokan {

namespace {
struct Failure {
  Status status = Status::YOKAN_SUCCESS;  // SUCCESS: nothing recorded
  std::string message;
};
thread_local Failure last_failure;
}  // namespace

Status fail(Status s, std::string message) {
  last_failure.status = s;
  last_failure.message = std::move(message);
  return s;
}

std::string take_failure(Status s) {
  if (ok(s) || last_failure.status != s) return {};
  last_failure.status = Status::YOKAN_SUCCESS;
  return std::move(last_failure.message);
}

void reset_failure() noexcept { last_failure.status = Status::YOKAN_SUCCESS; }

Status Backend::put_batch(const std::vector<std::pair<std::string_view, std::string_view>>& pairs) {
  for (const auto& [key, value] : pairs) {
    Status s = put(key, value);
    if (!ok(s)) return s;
  }
  return Status::YOKAN_SUCCESS;
}

Status Backend::erase_batch(const std::vector<std::string_view>& keys) {
  return write_batch(keys, {});
}

Status Backend::write_batch(
    const std::vector<std::string_view>& erases,
    const std::vector<std::pair<std::string_view, std::string_view>>& puts) {
  for (auto key : erases) {
    Status s = erase(key);
    if (!ok(s)) return s;
  }
  return puts.empty() ? Status::YOKAN_SUCCESS : put_batch(puts);
}

Status Backend::get_batch(const std::vector<std::string_view>& keys,
                          const BatchValueVisitor& visit) {
  for (size_t i = 0; i < keys.size(); ++i) {
    Status s = get(keys[i], [&](std::string_view v) { visit(i, &v); });
    if (s == Status::YOKAN_ERR_KEY_NOT_FOUND) {
      visit(i, nullptr);
    } else if (!ok(s)) {
      return s;
    }
  }
  return Status::YOKAN_SUCCESS;
}

Status Backend::lend(std::string_view key, const ValueVisitor& visit,
                     std::shared_ptr<const void>*) {
  return get(key, visit);
}

Status Backend::length(std::string_view key, size_t* size) {
  return get(key, [size](std::string_view v) { *size = v.size(); });
}

Status Backend::exists(std::string_view key, bool* found) {
  size_t size = 0;
  Status s = length(key, &size);
  if (s == Status::YOKAN_ERR_KEY_NOT_FOUND) {
    *found = false;
    return Status::YOKAN_SUCCESS;
  }
  *found = ok(s);
  return s;
}

Status Backend::count(uint64_t* n) {
  uint64_t c = 0;
  Status s = iterate({}, true, false, [&c](std::string_view, std::string_view) {
    ++c;
    return true;
  });
  *n = c;
  return s;
}

}  // namespace yokan
