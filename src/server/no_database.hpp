// The backend of a provider that has no database: one started without a
// "database" section (the destination of a restore or a migration), one whose
// database was detached by snapshot(remove_source=true), or one whose
// database migrated away. Every call fails with the same status and message
// (YOKAN_ERR_INVALID_DATABASE, or YOKAN_ERR_MIGRATED naming where the data
// went), so the handlers need no "is there a database?" branch of their own.
//
// Thread-safety: immutable after construction.
#pragma once

#include <memory>
#include <string>
#include <utility>

#include "yokan/backend.hpp"

namespace yokan {

class NoDatabase final : public Backend {
 public:
  NoDatabase(Status status, std::string message) : status_(status), message_(std::move(message)) {}

  // Sorted, valued and key/value, so that every request reaches a call that
  // answers the status (rather than OP_UNSUPPORTED for a missing capability);
  // persistent, so that a provider started without a database runs its
  // handlers on the handler pool, right for whatever database comes later.
  BackendTraits traits() const override {
    BackendTraits t;
    t.sorted = true;
    t.persistent = true;
    return t;
  }
  json config() const override { return json::object(); }

  Status put(std::string_view, std::string_view) override { return refuse(); }
  Status put_batch(const std::vector<std::pair<std::string_view, std::string_view>>&) override {
    return refuse();
  }
  Status erase_batch(const std::vector<std::string_view>&) override { return refuse(); }
  Status write_batch(const std::vector<std::string_view>&,
                     const std::vector<std::pair<std::string_view, std::string_view>>&) override {
    return refuse();
  }
  Status get(std::string_view, const ValueVisitor&) override { return refuse(); }
  Status get_batch(const std::vector<std::string_view>&, const BatchValueVisitor&) override {
    return refuse();
  }
  Status lend(std::string_view, const ValueVisitor&, std::shared_ptr<const void>*) override {
    return refuse();
  }
  Status length(std::string_view, size_t*) override { return refuse(); }
  Status exists(std::string_view, bool*) override { return refuse(); }
  Status erase(std::string_view) override { return refuse(); }
  Status count(uint64_t*) override { return refuse(); }
  Status iterate(std::string_view, bool, bool, const PairVisitor&) override { return refuse(); }

  Status status() const { return status_; }
  const std::string& message() const { return message_; }

 private:
  Status refuse() const { return fail(status_, message_); }

  const Status status_;
  const std::string message_;
};

// The database of a provider that has none (yet).
inline std::shared_ptr<Backend> no_database(uint16_t provider_id) {
  return std::make_shared<NoDatabase>(
      Status::YOKAN_ERR_INVALID_DATABASE,
      "provider " + std::to_string(provider_id) +
          " has no database (restore or migrate one into it, or start it with a "
          "\"database\" section)");
}

}  // namespace yokan
