// Shared-token authentication for the bootstrap handshake.
//
// Both ends hold the same secret. Each side proves it knows the secret by
// sending HMAC-SHA256(secret, role || client nonce || server nonce); the
// secret itself never travels. Nonces come from OpenSSL's CSPRNG, so a
// recorded proof cannot be replayed on another connection. Stateless and
// thread-safe; errors are reported as exceptions (yokan::Exception).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace yokan::auth {

constexpr size_t kNonceSize = 32;
constexpr size_t kMacSize = 32;
using Nonce = std::array<unsigned char, kNonceSize>;
using Mac = std::array<unsigned char, kMacSize>;

enum class Role { Client, Server };

// Fills `out` with cryptographically random bytes. Throws YOKAN_ERR_SYSTEM.
void random_bytes(void* out, size_t n);
Nonce make_nonce();

// The proof `role` sends on a connection with these nonces.
Mac prove(const std::string& secret, Role role, const Nonce& client_nonce,
          const Nonce& server_nonce);

// Constant-time check of a received proof.
bool verify(const std::string& secret, Role role, const Nonce& client_nonce,
            const Nonce& server_nonce, const Mac& received);

// Reads a token file: the whole file, without trailing whitespace. Throws
// YOKAN_ERR_INVALID_CONFIG if it cannot be read, is empty, or is accessible
// by group or others.
std::string read_token_file(const std::string& path);

}  // namespace yokan::auth
