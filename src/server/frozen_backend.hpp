// A database whose writes are refused while it migrates: reads go to the
// real backend, every write fails with YOKAN_ERR_BUSY and a message saying
// where the data is going. The provider serves it in place of the real one
// for the length of a migration, so no write can land after the copy was
// taken and the handlers need no "migrating?" branch of their own.
//
// Thread-safety: as the wrapped backend's.
#pragma once

#include <memory>
#include <string>
#include <utility>

#include "yokan/backend.hpp"

namespace yokan {

class FrozenBackend final : public Backend {
 public:
  FrozenBackend(std::shared_ptr<Backend> real, std::string message)
      : real_(std::move(real)), message_(std::move(message)) {}

  BackendTraits traits() const override { return real_->traits(); }
  json config() const override { return real_->config(); }

  Status put(std::string_view, std::string_view) override { return refuse(); }
  Status put_batch(const std::vector<std::pair<std::string_view, std::string_view>>&) override {
    return refuse();
  }
  Status erase_batch(const std::vector<std::string_view>&) override { return refuse(); }
  Status write_batch(const std::vector<std::string_view>&,
                     const std::vector<std::pair<std::string_view, std::string_view>>&) override {
    return refuse();
  }
  Status erase(std::string_view) override { return refuse(); }

  Status get(std::string_view key, const ValueVisitor& visit) override {
    return real_->get(key, visit);
  }
  Status get_batch(const std::vector<std::string_view>& keys,
                   const BatchValueVisitor& visit) override {
    return real_->get_batch(keys, visit);
  }
  Status lend(std::string_view key, const ValueVisitor& visit,
              std::shared_ptr<const void>* owner) override {
    return real_->lend(key, visit, owner);
  }
  Status length(std::string_view key, size_t* size) override { return real_->length(key, size); }
  Status exists(std::string_view key, bool* found) override { return real_->exists(key, found); }
  Status count(uint64_t* n) override { return real_->count(n); }
  Status iterate(std::string_view from, bool inclusive, bool want_values,
                 const PairVisitor& visit) override {
    return real_->iterate(from, inclusive, want_values, visit);
  }
  Status flush() override { return real_->flush(); }
  Status checkpoint(const std::string& dir, std::string* error) override {
    return real_->checkpoint(dir, error);
  }
  bool use_idle_time() override { return real_->use_idle_time(); }

 private:
  Status refuse() const { return fail(Status::YOKAN_ERR_BUSY, message_); }

  std::shared_ptr<Backend> real_;
  const std::string message_;
};

}  // namespace yokan
