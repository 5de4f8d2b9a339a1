// A C++ program that uses an installed mochi-yokan the way a consumer would:
// found with find_package(yokan) or pkg-config, headers from include/yokan.
// It starts a provider, stores a pair through a client and reads it back.
#include <cstdio>
#include <string>
#include <yokan/client.hpp>
#include <yokan/provider.hpp>

int main() {
  auto engine = yokan::Engine::create("tcp", /*listen=*/true);
  yokan::Provider provider(engine, 7, R"({"database": {"type": "map"}})");
  yokan::Client client(engine);
  yokan::Database db = client.make_database_handle(engine->self_address(), 7);
  db.put(0, {"answer"}, {"42"}, 5000);
  char value[16] = {};
  auto sizes = db.get(0, {"answer"}, {{value, sizeof value}}, 5000);
  std::string got(value, sizes.at(0));
  std::printf("answer = %s\n", got.c_str());
  engine->finalize();
  return got == "42" ? 0 : 1;
}
