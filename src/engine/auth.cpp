#include "engine/auth.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "yokan/common.hpp"

namespace yokan::auth {

void random_bytes(void* out, size_t n) {
  if (RAND_bytes(static_cast<unsigned char*>(out), static_cast<int>(n)) != 1)
    throw Exception(Status::YOKAN_ERR_SYSTEM, "the system random generator failed");
}

Nonce make_nonce() {
  Nonce n;
  random_bytes(n.data(), n.size());
  return n;
}

Mac prove(const std::string& secret, Role role, const Nonce& client_nonce,
          const Nonce& server_nonce) {
  // The role label makes a server's proof useless as a client's proof on a
  // connection where an attacker reflects our own nonce back at us.
  static const char kClient[] = "mochi-yokan/handshake/client";
  static const char kServer[] = "mochi-yokan/handshake/server";
  const char* label = role == Role::Client ? kClient : kServer;
  std::string msg(label, std::strlen(label) + 1);
  msg.append(reinterpret_cast<const char*>(client_nonce.data()), client_nonce.size());
  msg.append(reinterpret_cast<const char*>(server_nonce.data()), server_nonce.size());
  Mac mac{};
  unsigned int len = 0;
  if (!HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
            reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), mac.data(), &len) ||
      len != mac.size())
    throw Exception(Status::YOKAN_ERR_SYSTEM, "HMAC-SHA256 failed");
  return mac;
}

bool verify(const std::string& secret, Role role, const Nonce& client_nonce,
            const Nonce& server_nonce, const Mac& received) {
  Mac want = prove(secret, role, client_nonce, server_nonce);
  return CRYPTO_memcmp(want.data(), received.data(), want.size()) == 0;
}

std::string read_token_file(const std::string& path) {
  // Like ssh with its keys: a secret that others can read is no secret.
  struct stat st {};
  if (stat(path.c_str(), &st) != 0)
    throw Exception(
        Status::YOKAN_ERR_INVALID_CONFIG,
        "engine config: cannot read auth.token_file \"" + path + "\": " + std::strerror(errno));
  if (st.st_mode & (S_IRWXG | S_IRWXO))
    throw Exception(
        Status::YOKAN_ERR_INVALID_CONFIG,
        "engine config: auth.token_file \"" + path + "\" is accessible by group or others (mode " +
            std::to_string((st.st_mode >> 6) & 7) + std::to_string((st.st_mode >> 3) & 7) +
            std::to_string(st.st_mode & 7) + "); chmod 600 it");
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw Exception(
        Status::YOKAN_ERR_INVALID_CONFIG,
        "engine config: cannot read auth.token_file \"" + path + "\": " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() &&
         (s.back() == '\n' || s.back() == '\r' || s.back() == ' ' || s.back() == '\t'))
    s.pop_back();
  if (s.empty())
    throw Exception(Status::YOKAN_ERR_INVALID_CONFIG,
                    "engine config: auth.token_file \"" + path + "\" is empty");
  return s;
}

}  // namespace yokan::auth
