// Database::list and list_start.
#include <cstring>

#include "client/encode.hpp"

namespace yokan {

namespace {

bool placed(uint64_t size) { return size != SIZE_TOO_SMALL; }

// Copies a reply section (sizes + back-to-back data) into the caller's slots
// or packed buffer.
const char* copy_section(const std::vector<uint64_t>& sizes, const char* src, const char* end,
                         Database::ListLayout layout, const std::vector<Destination>& out) {
  char* packed =
      layout == Database::ListLayout::kPacked ? static_cast<char*>(out[0].data) : nullptr;
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (!placed(sizes[i])) continue;
    if (sizes[i] > size_t(end - src))
      throw Exception(Status::YOKAN_ERR_CORRUPTION, "short list reply");
    if (packed) {
      copy_bytes(packed, src, sizes[i]);
      packed += sizes[i];
    } else {
      copy_bytes(out[i].data, src, sizes[i]);
    }
    src += sizes[i];
  }
  return src;
}

std::vector<uint64_t> capacities(Database::ListLayout layout, uint64_t count, bool with_values,
                                 const std::vector<Destination>& key_out,
                                 const std::vector<Destination>& value_out,
                                 std::vector<uint64_t>* vcaps) {
  std::vector<uint64_t> kcaps;
  switch (layout) {
    case Database::ListLayout::kSlots:
      if (key_out.size() != count || (with_values && value_out.size() != count))
        throw Exception(Status::YOKAN_ERR_INVALID_ARGS, "one buffer per slot is needed");
      for (auto& d : key_out) kcaps.push_back(d.size);
      if (with_values)
        for (auto& d : value_out) vcaps->push_back(d.size);
      break;
    case Database::ListLayout::kPacked:
      if (key_out.size() != 1 || (with_values && value_out.size() != 1))
        throw Exception(Status::YOKAN_ERR_INVALID_ARGS, "one packed buffer is needed");
      kcaps.push_back(key_out[0].size);
      if (with_values) vcaps->push_back(value_out[0].size);
      break;
    case Database::ListLayout::kAlloc:
      kcaps.push_back(UINT64_MAX);
      if (with_values) vcaps->push_back(UINT64_MAX);
      break;
  }
  return kcaps;
}

std::string list_request(int32_t m, std::string_view from, std::string_view filter, uint64_t count,
                         bool with_values, Database::ListLayout layout,
                         const std::vector<uint64_t>& kcaps, const std::vector<uint64_t>& vcaps) {
  WireWriter w;
  w.put<int32_t>(m);
  w.bytes(from);
  w.bytes(filter);
  w.put<uint64_t>(count);
  w.put<uint8_t>(with_values);
  w.put<uint8_t>(layout != Database::ListLayout::kSlots);
  w.array(kcaps);
  w.array(vcaps);
  return std::move(w.str());
}

// Decodes a list reply; kSlots/kPacked copy the data into the caller's buffers.
Database::ListResult list_reply(const Reply& r, uint64_t count, bool with_values,
                                Database::ListLayout layout,
                                const std::vector<Destination>& key_out,
                                const std::vector<Destination>& value_out) {
  Database::ListResult result;
  WireReader in(r.meta);
  result.key_sizes = in.array<uint64_t>(count);
  result.value_sizes = in.array<uint64_t>(count);
  if (!in.done() || (with_values && result.value_sizes.size() != result.key_sizes.size()))
    throw Exception(Status::YOKAN_ERR_CORRUPTION, "malformed list reply");
  const char* src = r.body.data();
  const char* end = src + r.body.size();
  if (layout == Database::ListLayout::kAlloc) {
    size_t ktotal = 0;
    for (auto s : result.key_sizes)
      if (placed(s)) ktotal += s;
    if (ktotal > r.body.size()) throw Exception(Status::YOKAN_ERR_CORRUPTION, "short list reply");
    result.keys = Buffer(src, ktotal);
    result.values = Buffer(src + ktotal, r.body.size() - ktotal);
    return result;
  }
  src = copy_section(result.key_sizes, src, end, layout, key_out);
  if (with_values) copy_section(result.value_sizes, src, end, layout, value_out);
  return result;
}

}  // namespace

Database::ListResult Database::list(int32_t m, std::string_view from, std::string_view filter,
                                    uint64_t count, bool with_values, ListLayout layout,
                                    const std::vector<Destination>& key_out,
                                    const std::vector<Destination>& value_out,
                                    double timeout_ms) const {
  check_mode(m);
  std::vector<uint64_t> vcaps;
  auto kcaps = capacities(layout, count, with_values, key_out, value_out, &vcaps);
  if (count == 0) return {};
  Reply r =
      call(rpc::kList, list_request(m, from, filter, count, with_values, layout, kcaps, vcaps), {},
           timeout_ms, m);
  return list_reply(r, count, with_values, layout, key_out, value_out);
}

Database::PendingList Database::list_start(int32_t m, std::string_view from,
                                           std::string_view filter, uint64_t count,
                                           bool with_values, ListLayout layout,
                                           const std::vector<Destination>& key_out,
                                           const std::vector<Destination>& value_out, double t,
                                           const Completion& done) const {
  check_mode(m);
  std::vector<uint64_t> vcaps;
  auto kcaps = capacities(layout, count, with_values, key_out, value_out, &vcaps);
  // The destinations by value: the caller's vectors may be gone by finish().
  auto decode = [count, with_values, layout, key_out, value_out](const Reply& r) {
    if (count == 0) return ListResult{};
    return list_reply(r, count, with_values, layout, key_out, value_out);
  };
  if (count == 0) return {nullptr, decode};
  return {start(rpc::kList, list_request(m, from, filter, count, with_values, layout, kcaps, vcaps),
                t, m, {}, done),
          decode};
}

}  // namespace yokan
