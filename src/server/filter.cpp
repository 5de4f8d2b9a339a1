#include "server/filter.hpp"

namespace yokan {

namespace {

class PrefixFilter final : public KeyFilter {
 public:
  PrefixFilter(std::string_view prefix, bool strip) : prefix_(prefix), rule_{prefix_, strip} {}
  PrefixFilter(const PrefixFilter&) = delete;  // rule_ views prefix_
  PrefixFilter& operator=(const PrefixFilter&) = delete;
  bool accept(std::string_view key, std::string_view) override { return rule_.accept(key); }
  bool past_end(std::string_view key) const override { return rule_.past_end(key); }
  std::string_view start_hint() const override { return prefix_; }
  std::string_view output_key(std::string_view key) const override { return rule_.output_key(key); }
  const PrefixRule* prefix_rule() const override { return &rule_; }

 private:
  std::string prefix_;
  PrefixRule rule_;
};

class SuffixFilter final : public KeyFilter {
 public:
  SuffixFilter(std::string_view suffix, bool strip) : suffix_(suffix), strip_(strip) {}
  bool accept(std::string_view key, std::string_view) override {
    return key.size() >= suffix_.size() &&
           key.compare(key.size() - suffix_.size(), suffix_.size(), suffix_) == 0;
  }
  std::string_view output_key(std::string_view key) const override {
    return strip_ ? key.substr(0, key.size() - suffix_.size()) : key;
  }

 private:
  std::string suffix_;
  bool strip_;
};

}  // namespace

bool built_with_lua() noexcept {
#ifdef YOKAN_HAVE_LUA
  return true;
#else
  return false;
#endif
}

Status lib_filter_unsupported(std::string* error) {
  if (error) *error = "library filters are not supported; use LUA_FILTER";
  return Status::YOKAN_ERR_OP_UNSUPPORTED;
}

Status make_key_filter(int32_t m, std::string_view filter, const LuaLimits& limits,
                       std::unique_ptr<KeyFilter>* out, std::string* error) {
  if (m & mode::LUA_FILTER)
    return make_lua_filter(filter, m & mode::FILTER_VALUE, limits, out, error);
  if (m & mode::LIB_FILTER) return lib_filter_unsupported(error);
  bool strip = m & mode::NO_PREFIX;
  if (m & mode::SUFFIX)
    *out = std::make_unique<SuffixFilter>(filter, strip);
  else
    *out = std::make_unique<PrefixFilter>(filter, strip);
  return Status::YOKAN_SUCCESS;
}

}  // namespace yokan
