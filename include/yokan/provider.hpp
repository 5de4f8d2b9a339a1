// A Yokan provider: one database (backend) served under a provider id on an Engine.
//
// Construction throws yokan::Exception: YOKAN_ERR_INVALID_ARGS (engine not
// listening, empty config), YOKAN_ERR_INVALID_PROVIDER (id already taken on this
// engine), YOKAN_ERR_INVALID_CONFIG (malformed JSON, unknown backend, bad
// backend config; what() names the problem).
//
// Destroying a provider (or finalizing its engine) stops serving and closes the
// backend; it never deletes persistent data.
//
// Thread-safety: construction and destruction from any thread; the provider
// serves requests concurrently on the engine's handler threads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "yokan/engine.hpp"

namespace yokan {

class ProviderImpl;

class Provider {
 public:
  Provider(std::shared_ptr<Engine> engine, uint16_t provider_id, const std::string& config);
  ~Provider();
  Provider(const Provider&) = delete;
  Provider& operator=(const Provider&) = delete;

  // The complete configuration (backend defaults filled in), as JSON text.
  std::string config() const;
  uint16_t provider_id() const;

 private:
  std::shared_ptr<ProviderImpl> impl_;
};

}  // namespace yokan
