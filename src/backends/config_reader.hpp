// Typed access to a backend's JSON config with defaults, type checks and
// rejection of unknown keys. Every error names the key it is about.
#pragma once

#include <set>
#include <string>

#include "yokan/backend.hpp"

namespace yokan {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class ConfigReader {
 public:
  // `where` prefixes messages, e.g. "rocksdb config".
  ConfigReader(const json& config, std::string where) : in_(config), where_(std::move(where)) {
    if (!in_.is_object()) throw ConfigError(where_ + " must be a JSON object");
  }

  bool get_bool(const std::string& key, bool def) { return read<bool>(key, def, "a boolean"); }
  std::string get_string(const std::string& key, const std::string& def) {
    return read<std::string>(key, def, "a string");
  }
  std::string require_string(const std::string& key) {
    if (!in_.contains(key)) throw ConfigError(where_ + ": \"" + key + "\" is required");
    return get_string(key, "");
  }
  uint64_t get_uint(const std::string& key, uint64_t def) {
    seen_.insert(key);
    if (!in_.contains(key)) {
      out_[key] = def;
      return def;
    }
    const json& v = in_[key];
    // A config built in C++ holds 0 as a signed integer; JSON text never does.
    if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<int64_t>() >= 0))
      throw type_error(key, "a non-negative integer");
    out_[key] = v.get<uint64_t>();
    return v.get<uint64_t>();
  }
  // get_uint() with an upper bound; a larger value is an error naming the key.
  uint64_t get_uint_at_most(const std::string& key, uint64_t def, uint64_t most) {
    uint64_t n = get_uint(key, def);
    if (n > most)
      throw ConfigError(where_ + ": \"" + key + "\" must be at most " + std::to_string(most));
    return n;
  }
  int64_t get_int(const std::string& key, int64_t def) {
    seen_.insert(key);
    if (!in_.contains(key)) {
      out_[key] = def;
      return def;
    }
    const json& v = in_[key];
    if (!v.is_number_integer()) throw type_error(key, "an integer");
    out_[key] = v;
    return v.get<int64_t>();
  }
  double get_double(const std::string& key, double def) {
    seen_.insert(key);
    if (!in_.contains(key)) {
      out_[key] = def;
      return def;
    }
    const json& v = in_[key];
    if (!v.is_number()) throw type_error(key, "a number");
    out_[key] = v;
    return v.get<double>();
  }
  // A string that must be one of `choices`.
  std::string get_choice(const std::string& key, const std::string& def,
                         const std::set<std::string>& choices) {
    std::string v = get_string(key, def);
    if (!choices.count(v)) {
      std::string list;
      for (const auto& c : choices) list += (list.empty() ? "" : ", ") + c;
      throw ConfigError(where_ + ": \"" + key + "\" must be one of: " + list);
    }
    return v;
  }
  // A nested object, read with its own reader (call finish() on it, then put()).
  ConfigReader sub(const std::string& key) {
    seen_.insert(key);
    static const json empty = json::object();
    const json& v = in_.contains(key) ? in_[key] : empty;
    if (!v.is_object()) throw type_error(key, "an object");
    return ConfigReader(v, where_ + "." + key);
  }
  void put(const std::string& key, const json& completed) { out_[key] = completed; }

  // Throws if the input had a key that nobody read. Returns the completed config.
  json finish() const {
    for (const auto& item : in_.items())
      if (!seen_.count(item.key()))
        throw ConfigError(where_ + ": unknown key \"" + item.key() + "\"");
    return out_;
  }

 private:
  template <typename T>
  T read(const std::string& key, const T& def, const char* what) {
    seen_.insert(key);
    if (!in_.contains(key)) {
      out_[key] = def;
      return def;
    }
    const json& v = in_[key];
    bool good = false;
    if constexpr (std::is_same_v<T, bool>) good = v.is_boolean();
    if constexpr (std::is_same_v<T, std::string>) good = v.is_string();
    if (!good) throw type_error(key, what);
    out_[key] = v;
    return v.get<T>();
  }
  ConfigError type_error(const std::string& key, const char* what) const {
    return ConfigError(where_ + ": \"" + key + "\" must be " + what);
  }

  const json& in_;
  std::string where_;
  std::set<std::string> seen_;
  json out_ = json::object();
};

// Runs `body` and turns a ConfigError into YOKAN_ERR_INVALID_CONFIG + message.
template <typename F>
Status with_config_errors(std::string* error, F&& body) {
  try {
    return body();
  } catch (const ConfigError& e) {
    if (error) *error = e.what();
    return Status::YOKAN_ERR_INVALID_CONFIG;
  } catch (const json::exception& e) {
    if (error) *error = e.what();
    return Status::YOKAN_ERR_INVALID_CONFIG;
  }
}

}  // namespace yokan
