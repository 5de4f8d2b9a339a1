// Key filters for listing and erase_range: prefix (default), suffix (SUFFIX)
// or a Lua predicate (LUA_FILTER). Built per request.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "yokan/common.hpp"

namespace yokan {

// The rule of the default filter, a key prefix. Inline, so that a listing by
// prefix (the common case) tests each key without a virtual call.
struct PrefixRule {
  std::string_view prefix;
  bool strip = false;  // NO_PREFIX: keys are returned without the prefix

  bool accept(std::string_view key, std::string_view /*value*/ = {}) const {
    return key.size() >= prefix.size() &&
           (prefix.empty() || std::memcmp(key.data(), prefix.data(), prefix.size()) == 0);
  }
  // In bytewise order: no key from this one on can match.
  bool past_end(std::string_view key) const { return key.substr(0, prefix.size()) > prefix; }
  std::string_view output_key(std::string_view key) const {
    return strip ? key.substr(prefix.size()) : key;
  }
};

class KeyFilter {
 public:
  virtual ~KeyFilter() = default;
  // Whether accept() looks at the value (so iteration must read values).
  virtual bool needs_value() const { return false; }
  // False rejects the pair. A filter that fails fatally (Lua limits) returns
  // false and reports through failed().
  virtual bool accept(std::string_view key, std::string_view value) = 0;
  // In bytewise order: true once no later key can match (ends a listing early).
  virtual bool past_end(std::string_view key) const { return false; }
  // The smallest key that can match ("" = any), where ordered listing may start.
  virtual std::string_view start_hint() const { return {}; }
  // The key as returned to the client (NO_PREFIX strips the prefix or suffix).
  virtual std::string_view output_key(std::string_view key) const { return key; }
  // The same tests as an inline rule, for a filter that is a plain prefix
  // (else null): a listing can then skip the virtual calls per key.
  virtual const PrefixRule* prefix_rule() const { return nullptr; }
  // Non-success once the filter failed; `message` says why.
  Status failed() const { return status_; }
  const std::string& message() const { return message_; }

 protected:
  void fail(Status s, std::string message) {
    status_ = s;
    message_ = std::move(message);
  }

 private:
  Status status_ = Status::YOKAN_SUCCESS;
  std::string message_;
};

struct LuaLimits {
  double time_ms = 1000;            // per request
  size_t memory_bytes = 128 << 20;  // per request, the key and value included
};

// Builds the filter that `mode` asks for. YOKAN_ERR_MODE for LUA_FILTER when
// built without Lua, YOKAN_ERR_INVALID_FILTER (with `error`) for a Lua chunk
// that does not compile, YOKAN_ERR_OP_UNSUPPORTED for LIB_FILTER.
Status make_key_filter(int32_t mode, std::string_view filter, const LuaLimits& limits,
                       std::unique_ptr<KeyFilter>* out, std::string* error);

// Document filters for collection listing: a Lua predicate (LUA_FILTER) that
// sees __collection__, __id__, __doc__ and the cjson module as `cjson`.
class DocFilter {
 public:
  virtual ~DocFilter() = default;
  // False rejects the document; a fatal failure (Lua limits) shows in failed().
  virtual bool accept(std::string_view collection, uint64_t id, std::string_view doc) = 0;
  virtual Status failed() const = 0;
  virtual std::string message() const = 0;
};

// Null `*out` (and success) when `mode` asks for no filter: every document
// passes and the filter bytes are ignored. YOKAN_ERR_MODE for LUA_FILTER
// without Lua, YOKAN_ERR_INVALID_FILTER for code that does not compile,
// YOKAN_ERR_OP_UNSUPPORTED for LIB_FILTER.
Status make_doc_filter(int32_t mode, std::string_view filter, const LuaLimits& limits,
                       std::unique_ptr<DocFilter>* out, std::string* error);

// Lua filters (src/server/lua_filter.cpp). Without Lua support both answer
// YOKAN_ERR_MODE, so the selectors above need no conditional code.
Status make_lua_doc_filter(std::string_view code, const LuaLimits& limits,
                           std::unique_ptr<DocFilter>* out, std::string* error);
Status make_lua_filter(std::string_view code, bool with_value, const LuaLimits& limits,
                       std::unique_ptr<KeyFilter>* out, std::string* error);
// When the request this thread is about to serve arrived: Lua filters built
// on this thread count their time budget from then (the default,
// time_point{}, means "when the filter is built"). Set by the provider's
// filter pool, so that time spent queued behind other filters is budgeted.
void set_request_arrival(std::chrono::steady_clock::time_point t);

// The answer to LIB_FILTER, for key/value and document filters alike.
Status lib_filter_unsupported(std::string* error);

}  // namespace yokan
