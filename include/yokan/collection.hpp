// The C++ client API of document collections: a Collection pairs a name with a
// Database handle (no RPC to make one).
//
// Ids are 0, 1, 2, ... per collection and never reused. Every method may block
// (an RPC) and throws yokan::Exception: YOKAN_ERR_INVALID_ARGS for an empty
// name or one with a NUL byte, YOKAN_ERR_KEY_NOT_FOUND when the collection
// does not exist, YOKAN_ERR_INVALID_ID for an update of an id that was never
// allocated (unless UPDATE_NEW), YOKAN_ERR_OP_UNSUPPORTED on backends without
// values (set, unordered_set), plus the errors of client.hpp.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "yokan/client.hpp"

namespace yokan {

using DocIds = std::vector<uint64_t>;

class Collection {
 public:
  Collection(Database db, std::string name);

  const std::string& name() const { return name_; }
  const Database& database() const { return db_; }

  // KEY_EXISTS if the name is already taken.
  void create(int32_t mode, double timeout_ms) const;
  // Erases the metadata and every document; KEY_NOT_FOUND if absent.
  void drop(int32_t mode, double timeout_ms) const;
  bool exists(int32_t mode, double timeout_ms) const;
  struct Info {
    uint64_t size = 0;     // live documents
    uint64_t next_id = 0;  // the id the next store gets
  };
  Info info(int32_t mode, double timeout_ms) const;

  // Stores the documents under consecutive new ids, returned in order.
  DocIds store(int32_t mode, const Keys& docs, double timeout_ms) const;
  void update(int32_t mode, const DocIds& ids, const Keys& docs, double timeout_ms) const;
  // Layouts as Database::list: one destination per id, one packed destination,
  // or kAlloc (the documents come back in LoadResult::data). Sizes are
  // KEY_NOT_FOUND (absent) or SIZE_TOO_SMALL (did not fit; in packed layout,
  // every later document too).
  using Layout = Database::ListLayout;
  struct LoadResult {
    std::vector<uint64_t> sizes;
    Buffer data;  // kAlloc only
  };
  LoadResult load(int32_t mode, const DocIds& ids, Layout layout,
                  const std::vector<Destination>& out, double timeout_ms) const;
  // Sizes, KEY_NOT_FOUND for absent documents.
  std::vector<uint64_t> length(int32_t mode, const DocIds& ids, double timeout_ms) const;
  // Erasing an absent id is not an error.
  void erase(int32_t mode, const DocIds& ids, double timeout_ms) const;
  // Up to `count` live documents from `start_id` (always included) in id order
  // that pass `filter` (Lua code with LUA_FILTER, else ignored). Fewer ids than
  // `count` means the collection ended.
  struct ListResult {
    DocIds ids;
    std::vector<uint64_t> sizes;
    Buffer data;  // kAlloc only
  };
  ListResult list(int32_t mode, uint64_t start_id, std::string_view filter, uint64_t count,
                  Layout layout, const std::vector<Destination>& out, double timeout_ms) const;
  // The two-step forms, as Database's (see Started in client.hpp): output
  // destinations are written by finish() and must stay valid until then.
  Started<void> create_start(int32_t mode, double timeout_ms, const Completion& done = {}) const;
  Started<void> drop_start(int32_t mode, double timeout_ms, const Completion& done = {}) const;
  Started<bool> exists_start(int32_t mode, double timeout_ms, const Completion& done = {}) const;
  Started<Info> info_start(int32_t mode, double timeout_ms, const Completion& done = {}) const;
  Started<DocIds> store_start(int32_t mode, const Keys& docs, double timeout_ms,
                              const Completion& done = {}) const;
  Started<void> update_start(int32_t mode, const DocIds& ids, const Keys& docs, double timeout_ms,
                             const Completion& done = {}) const;
  Started<LoadResult> load_start(int32_t mode, const DocIds& ids, Layout layout,
                                 const std::vector<Destination>& out, double timeout_ms,
                                 const Completion& done = {}) const;
  Started<std::vector<uint64_t>> length_start(int32_t mode, const DocIds& ids, double timeout_ms,
                                              const Completion& done = {}) const;
  Started<void> erase_start(int32_t mode, const DocIds& ids, double timeout_ms,
                            const Completion& done = {}) const;
  using PendingList = Started<ListResult>;
  PendingList list_start(int32_t mode, uint64_t start_id, std::string_view filter, uint64_t count,
                         Layout layout, const std::vector<Destination>& out, double timeout_ms,
                         const Completion& done = {}) const;

 private:
  Reply call(uint16_t rpc, std::string_view meta, const std::vector<Segment>& body,
             double timeout_ms, int32_t mode) const;

  Database db_;
  std::string name_;
};

}  // namespace yokan
