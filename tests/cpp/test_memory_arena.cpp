// The in-memory backends' record memory (src/backends/memory_arena.hpp),
// observed from outside: idle time faults in memory ahead of the records
// (the process's resident size grows), within bounds, and erased records'
// memory is reused rather than taken afresh.
#include <absl/base/config.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "yokan/backend.hpp"

using yokan::Backend;
using yokan::json;
using yokan::Status;

namespace {

const char* const kMemoryBackends[] = {"map", "unordered_map", "set", "unordered_set"};

#if defined(ABSL_HAVE_ADDRESS_SANITIZER)
constexpr bool kAddressSanitizer = true;
#else
constexpr bool kAddressSanitizer = false;
#endif

size_t resident_bytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  unsigned long size = 0, resident = 0;
  if (!f) return 0;
  if (std::fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
  std::fclose(f);
  return resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

std::unique_ptr<Backend> open(const char* type, json config = json::object()) {
  std::unique_ptr<Backend> db;
  std::string err;
  EXPECT_EQ(yokan::create_backend(type, config, &db, &err), Status::YOKAN_SUCCESS) << err;
  return db;
}

std::string value_for(const Backend& db, size_t size) {
  return db.traits().values ? std::string(size, 'v') : std::string();
}

// Runs idle steps until there is nothing left; returns how many did work.
int idle_until_done(Backend& db) {
  int steps = 0;
  while (db.use_idle_time()) {
    if (++steps > 100000) ADD_FAILURE() << "idle work never ends";
    if (steps > 100000) break;
  }
  return steps;
}

TEST(MemoryArena, IdleTimeFaultsInMemoryAhead) {
  for (const char* type : kMemoryBackends) {
    SCOPED_TRACE(type);
    auto db = open(type);
    ASSERT_TRUE(db);
    // An empty store has nothing to prepare for.
    EXPECT_FALSE(db->use_idle_time());
    ASSERT_EQ(db->put("first", value_for(*db, 64)), Status::YOKAN_SUCCESS);
    const size_t before = resident_bytes();
    const int steps = idle_until_done(*db);
    const size_t grown = resident_bytes() - before;
    // At least 1 MiB ahead of a small store, in steps of a few pages.
    EXPECT_GE(grown, 1000u << 10);
    EXPECT_LT(grown, 8u << 20);
    EXPECT_GE(steps, 64);
    // Done means done: until records use that memory, no more work.
    EXPECT_FALSE(db->use_idle_time());
    // The prepared memory serves the next records: these fault nothing new.
    const std::string value = value_for(*db, 64);
    char key[32];
    const size_t ready = resident_bytes();
    for (int i = 0; i < 5000; ++i) {
      std::snprintf(key, sizeof key, "k%012d", i);  // no allocation per key
      ASSERT_EQ(db->put(key, value), Status::YOKAN_SUCCESS);
    }
    // A B-tree's nodes come from the prepared memory too; a hash table's
    // array grows by doubling and comes from the general heap. (Under
    // AddressSanitizer the arena clears the shadow of each block it hands
    // out, and that shadow, 1/8 of the ~500 KiB, is resident too.)
    const bool sorted = db->traits().sorted && !kAddressSanitizer;
    EXPECT_LT(resident_bytes() - ready, sorted ? 16u << 10 : 256u << 10);
  }
}

TEST(MemoryArena, PrefaultCanBeTurnedOff) {
  for (const char* type : kMemoryBackends) {
    SCOPED_TRACE(type);
    auto db = open(type, {{"prefault_max_bytes", 0}});
    ASSERT_TRUE(db);
    EXPECT_EQ(db->config().value("prefault_max_bytes", 1), 0);
    ASSERT_EQ(db->put("first", value_for(*db, 64)), Status::YOKAN_SUCCESS);
    EXPECT_FALSE(db->use_idle_time());
  }
}

TEST(MemoryArena, PrefaultStaysWithinItsMaximum) {
  auto db = open("map", {{"prefault_max_bytes", 2 << 20}});
  ASSERT_TRUE(db);
  // A store of ~8 MiB would get as much ahead, but the maximum is 2 MiB.
  const std::string value(100, 'v');
  char key[32];
  for (int i = 0; i < 60000; ++i) {
    std::snprintf(key, sizeof key, "key%012d", i);
    ASSERT_EQ(db->put(key, value), Status::YOKAN_SUCCESS);
  }
  const size_t before = resident_bytes();
  idle_until_done(*db);
  const size_t grown = resident_bytes() - before;
  EXPECT_GE(grown, 1u << 20);
  EXPECT_LE(grown, (2u << 20) + (64u << 10));
}

TEST(MemoryArena, ErasedRecordsMemoryIsReused) {
  auto db = open("map", {{"prefault_max_bytes", 0}});
  ASSERT_TRUE(db);
  const std::string value(100, 'v');
  char key[32];
  auto fill = [&](char tag) {
    for (int i = 0; i < 40000; ++i) {
      std::snprintf(key, sizeof key, "%c%012d", tag, i);
      ASSERT_EQ(db->put(key, value), Status::YOKAN_SUCCESS);
    }
  };
  auto erase = [&](char tag) {
    for (int i = 0; i < 40000; ++i) {
      std::snprintf(key, sizeof key, "%c%012d", tag, i);
      ASSERT_EQ(db->erase(key), Status::YOKAN_SUCCESS);
    }
  };
  fill('a');  // ~5 MiB of records
  erase('a');
  const size_t before = resident_bytes();
  fill('b');
  EXPECT_LT(resident_bytes() - before, 1u << 20);
  uint64_t n = 0;
  ASSERT_EQ(db->count(&n), Status::YOKAN_SUCCESS);
  EXPECT_EQ(n, 40000u);
  std::string out;
  ASSERT_EQ(db->get("b000000039999", [&](std::string_view v) { out.assign(v); }),
            Status::YOKAN_SUCCESS);
  EXPECT_EQ(out, value);
}

TEST(MemoryArena, ConfigErrors) {
  std::unique_ptr<Backend> db;
  std::string err;
  EXPECT_EQ(yokan::create_backend("map", {{"prefault_max_bytes", "lots"}}, &db, &err),
            Status::YOKAN_ERR_INVALID_CONFIG);
  EXPECT_NE(err.find("prefault_max_bytes"), std::string::npos) << err;
  EXPECT_EQ(yokan::create_backend("map", {{"prefault_max_bytes", -1}}, &db, &err),
            Status::YOKAN_ERR_INVALID_CONFIG);
  EXPECT_NE(err.find("prefault_max_bytes"), std::string::npos) << err;
  // Faulted-in memory is resident at once: more than 1 GiB ahead is refused.
  EXPECT_EQ(yokan::create_backend("map", {{"prefault_max_bytes", (1ull << 30) + 1}}, &db, &err),
            Status::YOKAN_ERR_INVALID_CONFIG);
  EXPECT_NE(err.find("at most"), std::string::npos) << err;
  EXPECT_EQ(yokan::create_backend("unordered_map", {{"prefault_max_bytes", 1ull << 30}}, &db, &err),
            Status::YOKAN_SUCCESS)
      << err;
}

}  // namespace
