// The registry of compiled-in backends. The list comes from CMake
// (YOKAN_BACKENDS -> backends_list.inc), the same list that produces the Python
// `available_backends` and the test parametrisation.
#include <map>
#include <mutex>

#include "yokan/backend.hpp"

namespace yokan {

#define YOKAN_BACKEND(name) void register_backend_##name(std::map<std::string, BackendFactory>&);
#include "backends_list.inc"
#undef YOKAN_BACKEND

namespace {
const std::map<std::string, BackendFactory>& registry() {
  static const std::map<std::string, BackendFactory> backends = [] {
    std::map<std::string, BackendFactory> r;
#define YOKAN_BACKEND(name) register_backend_##name(r);
#include "backends_list.inc"
#undef YOKAN_BACKEND
    return r;
  }();
  return backends;
}
}  // namespace

Status create_backend(const std::string& type, const json& config, std::unique_ptr<Backend>* out,
                      std::string* error) {
  auto it = registry().find(type);
  if (it == registry().end()) {
    if (error) *error = "unknown backend type \"" + type + "\"";
    return Status::YOKAN_ERR_INVALID_CONFIG;
  }
  // No library exception may escape a backend's construction.
  try {
    return it->second(config, out, error);
  } catch (const json::exception& e) {
    if (error) *error = type + ": " + e.what();
    return Status::YOKAN_ERR_INVALID_CONFIG;
  } catch (const std::bad_alloc&) {
    return Status::YOKAN_ERR_ALLOCATION;
  } catch (const std::exception& e) {
    if (error) *error = type + ": " + e.what();
    return Status::YOKAN_ERR_OTHER;
  }
}

std::vector<std::string> available_backends() {
  std::vector<std::string> names;
  for (const auto& item : registry()) names.push_back(item.first);
  return names;
}

}  // namespace yokan
