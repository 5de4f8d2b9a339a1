#include <algorithm>

#include "server/provider_impl.hpp"

namespace yokan {

// meta [mode][from_key][filter][count][with_values u8][packed u8]
//      [key capacities][value capacities]   (one total each if packed, else one per slot)
// Reply meta [key sizes][value sizes] (n <= count items; a shorter list means the end);
// body: the keys that fit, back to back, then the values.
//
// Sizes are SIZE_TOO_SMALL for an item that did not fit its slot (in packed
// mode, that item and every later one). IGNORE_KEYS returns empty keys;
// KEEP_LAST still returns the key of the last item (the one in slot count-1,
// or one after which the store has no more keys), which is what paging needs.
void ProviderImpl::handle_list(RequestPtr req) {
  WireReader in(req->meta());
  const int32_t m = in.get<int32_t>();
  const std::string_view from = in.bytes();
  const std::string_view filter_text = in.bytes();
  const uint64_t count = in.get<uint64_t>();
  const bool with_values = in.get<uint8_t>();
  const bool packed = in.get<uint8_t>();
  auto kcaps = in.array<uint64_t>(rpc::kMaxBatch);
  auto vcaps = in.array<uint64_t>(rpc::kMaxBatch);
  const size_t ncaps = packed ? 1 : count;
  if (!in.done() || count > rpc::kMaxBatch || kcaps.size() != ncaps ||
      vcaps.size() != (with_values ? ncaps : 0))
    return req->respond(Status::YOKAN_ERR_INVALID_ARGS);
  if (m & ~(kSupportedModes | mode::LUA_FILTER | mode::LIB_FILTER))
    return req->respond(Status::YOKAN_ERR_MODE);
  const std::shared_ptr<Backend> backend = pin();  // survives a restore meanwhile
  if (!backend->traits().sorted)
    return req->respond(Status::YOKAN_ERR_OP_UNSUPPORTED, "this backend cannot list keys in order");

  std::unique_ptr<KeyFilter> filter;
  std::string error;
  Status s = make_key_filter(m, filter_text, lua_limits, &filter, &error);
  if (!ok(s)) return req->respond(s, error);

  // Start at the filter's first possible key when it comes after from_key.
  std::string_view start = from;
  bool inclusive = m & mode::INCLUSIVE;
  // With a custom key order a prefix range is not contiguous: scan it all.
  const bool bytewise = backend->traits().bytewise;
  std::string_view hint = bytewise ? filter->start_hint() : std::string_view();
  if (!hint.empty() && (from.empty() || from < hint)) {
    start = hint;
    inclusive = true;
  }
  const bool ignore_keys = m & mode::IGNORE_KEYS;
  const bool keep_last = (m & mode::KEEP_LAST) == mode::KEEP_LAST;

  std::vector<uint64_t> ksizes, vsizes;
  Buffer keys, values;
  uint64_t kroom = packed ? kcaps[0] : 0, vroom = packed && with_values ? vcaps[0] : 0;
  bool koverflow = false, voverflow = false;
  bool visited_after_last = false;  // a key of the store came after the last item
  std::string last_key;

  // Appends `data` as item i of a section, honouring its capacity rules.
  auto place = [packed](std::string_view data, uint64_t slot_cap, uint64_t* room, bool* overflow,
                        Buffer* out, std::vector<uint64_t>* sizes) {
    uint64_t cap = packed ? *room : slot_cap;
    if (*overflow || data.size() > cap) {
      sizes->push_back(SIZE_TOO_SMALL);
      if (packed) *overflow = true;
      return;
    }
    sizes->push_back(data.size());
    out->append(data.data(), data.size());
    if (packed) *room -= data.size();
  };

  ksizes.reserve(std::min<uint64_t>(count, 4096));
  if (with_values) vsizes.reserve(std::min<uint64_t>(count, 4096));
  // The per-pair work, written once for both kinds of `match`: the filter's
  // inline prefix rule, or the filter itself (Lua, suffix) through virtual calls.
  auto visit_with = [&](const auto& match) {
    return backend->iterate(
        start, inclusive, with_values || filter->needs_value(),
        [&](std::string_view k, std::string_view v) {
          if (ksizes.size() == count || (bytewise && match.past_end(k))) {
            visited_after_last = true;
            return false;
          }
          visited_after_last = true;
          if (!match.accept(k, v)) return ok(filter->failed());
          visited_after_last = false;
          size_t i = ksizes.size();
          std::string_view out_key = match.output_key(k);
          if (ignore_keys) {
            ksizes.push_back(0);
            if (keep_last) last_key.assign(out_key.data(), out_key.size());
          } else {
            place(out_key, packed ? 0 : kcaps[i], &kroom, &koverflow, &keys, &ksizes);
          }
          if (with_values) place(v, packed ? 0 : vcaps[i], &vroom, &voverflow, &values, &vsizes);
          return true;
        });
  };
  if (const PrefixRule* rule = filter->prefix_rule()) {
    s = visit_with(*rule);
  } else {
    struct {
      KeyFilter* f;
      bool past_end(std::string_view k) const { return f->past_end(k); }
      bool accept(std::string_view k, std::string_view v) const { return f->accept(k, v); }
      std::string_view output_key(std::string_view k) const { return f->output_key(k); }
    } general{filter.get()};
    s = visit_with(general);
  }
  if (ok(s) && !ok(filter->failed())) return req->respond(filter->failed(), filter->message());
  if (!ok(s)) return req->respond(s, why(s));

  // KEEP_LAST: the last item keeps its key when the page is full or the store ended.
  if (keep_last && !ksizes.empty() && (ksizes.size() == count || !visited_after_last)) {
    ksizes.pop_back();
    place(last_key, packed ? 0 : kcaps[ksizes.size()], &kroom, &koverflow, &keys, &ksizes);
  }
  WireWriter out;
  out.array(ksizes);
  out.array(vsizes);
  keys.append(values.data(), values.size());
  req->respond(Status::YOKAN_SUCCESS, std::move(out.str()), std::move(keys));
}

}  // namespace yokan
