// Conformance tests of the storage backends, at the Backend interface level.
//
// Parameterised over every compiled backend (yokan::available_backends(),
// except "null"), plus configuration variants of some (berkeleydb hash and
// in-memory, tkrzw hash/tiny/baby, gdbm without fsync). Persistent backends
// also get reopen, double-open and crash (SIGKILL) tests; for the crash test
// this binary re-executes itself as the child process (see main()).
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "yokan/backend.hpp"

using yokan::Backend;
using yokan::json;
using yokan::Status;

namespace {

// One backend type with extra config entries. Persistent ones get a "path"
// (a directory or a file, under the test's temporary directory) added.
struct Variant {
  std::string type;
  std::string label;  // unique test-name suffix
  json extra;         // merged into the config
  bool needs_path;
  const char* bool_key;  // a boolean config key, for type-error tests
};

std::vector<Variant> all_variants() {
  static const std::map<std::string, const char*> bool_keys = {{"map", "use_lock"},
                                                               {"unordered_map", "use_lock"},
                                                               {"set", "use_lock"},
                                                               {"unordered_set", "use_lock"},
                                                               {"rocksdb", "create_if_missing"},
                                                               {"leveldb", "create_if_missing"},
                                                               {"lmdb", "no_lock"},
                                                               {"berkeleydb", "create_if_missing"},
                                                               {"gdbm", "use_lock"},
                                                               {"tkrzw", "writable"},
                                                               {"array", "use_lock"},
                                                               {"log", "create_if_missing"}};
  static const std::set<std::string> with_path = {"rocksdb",    "leveldb", "lmdb", "gdbm",
                                                  "berkeleydb", "tkrzw",   "log"};
  std::vector<Variant> v;
  for (const std::string& name : yokan::available_backends()) {
    if (name == "null") continue;
    auto bk = bool_keys.count(name) ? bool_keys.at(name) : nullptr;
    v.push_back({name, name, json::object(), with_path.count(name) > 0, bk});
    if (name == "berkeleydb") {
      v.push_back({name, "berkeleydb_hash", {{"type", "hash"}}, true, bk});
      v.push_back({name, "berkeleydb_memory", json::object(), false, bk});
    } else if (name == "tkrzw") {
      for (const char* t : {"hash", "tiny", "baby"})
        v.push_back({name, std::string("tkrzw_") + t, {{"type", t}}, true, bk});
    } else if (name == "gdbm") {
      v.push_back({name, "gdbm_nosync", {{"sync", false}}, true, bk});
    }
  }
  return v;
}

// Expected traits from the reference table.
bool expect_sorted(const Variant& v) {
  static const std::set<std::string> sorted = {
      "map",   "set",        "rocksdb", "leveldb", "lmdb", "berkeleydb", "berkeleydb_memory",
      "tkrzw", "tkrzw_baby", "array",   "log"};
  return sorted.count(v.label) > 0;
}

std::string make_temp_dir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "yokan-test-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  return tmpl;
}

std::string bin(const char* s, size_t n) { return std::string(s, n); }

class BackendTest : public ::testing::TestWithParam<Variant> {
 protected:
  void SetUp() override { dir_ = make_temp_dir(); }
  void TearDown() override {
    db_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // The config of this variant; the database path is inside a nested,
  // not-yet-existing directory, so parent directories must be created.
  json config() const {
    json c = GetParam().extra;
    if (GetParam().needs_path) c["path"] = dir_ + "/sub/dir/db";
    return c;
  }

  Status open(std::unique_ptr<Backend>* out, const json& c, std::string* error = nullptr) {
    std::string err;
    Status s = yokan::create_backend(GetParam().type, c, out, &err);
    if (error) *error = err;
    return s;
  }
  void open_default() {
    std::string err;
    ASSERT_EQ(open(&db_, config(), &err), Status::YOKAN_SUCCESS) << err;
    ASSERT_TRUE(db_);
  }
  bool values() const { return db_->traits().values; }
  bool persistent() const { return db_->traits().persistent; }
  std::string val(const std::string& v) const { return values() ? v : std::string(); }

  // get() as an optional string; "<absent>" when not found.
  std::string get(std::string_view key) {
    std::string out;
    Status s = db_->get(key, [&](std::string_view v) { out.assign(v); });
    if (s == Status::YOKAN_ERR_KEY_NOT_FOUND) return "<absent>";
    EXPECT_EQ(s, Status::YOKAN_SUCCESS);
    return out;
  }
  uint64_t count() {
    uint64_t n = 0;
    EXPECT_EQ(db_->count(&n), Status::YOKAN_SUCCESS);
    return n;
  }
  std::vector<std::string> keys(std::string_view from = {}, bool inclusive = true,
                                size_t limit = SIZE_MAX) {
    std::vector<std::string> out;
    Status s = db_->iterate(from, inclusive, false, [&](std::string_view k, std::string_view) {
      out.emplace_back(k);
      return out.size() < limit;
    });
    EXPECT_EQ(s, Status::YOKAN_SUCCESS);
    return out;
  }

  std::string dir_;
  std::unique_ptr<Backend> db_;
};

TEST_P(BackendTest, Traits) {
  open_default();
  auto t = db_->traits();
  EXPECT_EQ(t.sorted, expect_sorted(GetParam()));
  EXPECT_EQ(t.persistent, GetParam().needs_path);
  if (GetParam().needs_path) EXPECT_TRUE(t.values);
  static const std::set<std::string> atomic = {"rocksdb", "leveldb", "lmdb",
                                               "log",     "gdbm",    "gdbm_nosync"};
  EXPECT_EQ(t.atomic_batches, atomic.count(GetParam().label) > 0);
}

TEST_P(BackendTest, PutGetLengthExistsErase) {
  open_default();
  ASSERT_EQ(db_->put("alpha", val("one")), Status::YOKAN_SUCCESS);
  EXPECT_EQ(get("alpha"), val("one"));
  size_t len = 99;
  EXPECT_EQ(db_->length("alpha", &len), Status::YOKAN_SUCCESS);
  EXPECT_EQ(len, val("one").size());
  EXPECT_EQ(db_->length("beta", &len), Status::YOKAN_ERR_KEY_NOT_FOUND);
  bool found = false;
  EXPECT_EQ(db_->exists("alpha", &found), Status::YOKAN_SUCCESS);
  EXPECT_TRUE(found);
  EXPECT_EQ(db_->exists("beta", &found), Status::YOKAN_SUCCESS);
  EXPECT_FALSE(found);
  EXPECT_EQ(get("beta"), "<absent>");
  EXPECT_EQ(db_->erase("alpha"), Status::YOKAN_SUCCESS);
  EXPECT_EQ(get("alpha"), "<absent>");
  EXPECT_EQ(db_->exists("alpha", &found), Status::YOKAN_SUCCESS);
  EXPECT_FALSE(found);
  EXPECT_EQ(db_->erase("alpha"), Status::YOKAN_SUCCESS);  // absent: not an error
  EXPECT_EQ(db_->flush(), Status::YOKAN_SUCCESS);
}

TEST_P(BackendTest, Overwrite) {
  open_default();
  if (!values()) GTEST_SKIP() << "no values";
  ASSERT_EQ(db_->put("k", "first value, long"), Status::YOKAN_SUCCESS);
  ASSERT_EQ(db_->put("k", "2nd"), Status::YOKAN_SUCCESS);
  EXPECT_EQ(get("k"), "2nd");
  EXPECT_EQ(count(), 1u);
}

// One key rewritten with values that grow, shrink and cross the size at
// which the in-memory stores move a value into a shared block, for keys of
// several lengths (alignment of what follows the key); neighbours keep theirs.
TEST_P(BackendTest, OverwritesOfEverySize) {
  open_default();
  if (!values()) GTEST_SKIP() << "no values";
  const size_t sizes[] = {0,     1,     15, 16,     17,    100, 5,  1000,   65535,
                          65536, 65537, 10, 200000, 70000, 0,   64, 300000, 1};
  for (size_t key_size : {1, 7, 8, 9, 100, 300}) {  // lmdb takes keys up to 511 bytes
    const std::string before(key_size, 'a'), key(key_size, 'b'), after(key_size, 'c');
    ASSERT_EQ(db_->put(before, "left"), Status::YOKAN_SUCCESS);
    ASSERT_EQ(db_->put(after, "right"), Status::YOKAN_SUCCESS);
    char fill = 'A';
    for (size_t size : sizes) {
      const std::string value(size, fill++);
      ASSERT_EQ(db_->put(key, value), Status::YOKAN_SUCCESS) << key_size << "/" << size;
      ASSERT_EQ(get(key), value) << key_size << "/" << size;
      size_t len = 0;
      ASSERT_EQ(db_->length(key, &len), Status::YOKAN_SUCCESS);
      EXPECT_EQ(len, size);
    }
    EXPECT_EQ(get(before), "left");
    EXPECT_EQ(get(after), "right");
    ASSERT_EQ(db_->erase(key), Status::YOKAN_SUCCESS);
    EXPECT_EQ(get(key), "<absent>");
  }
}

TEST_P(BackendTest, EmptyValue) {
  open_default();
  ASSERT_EQ(db_->put("empty", ""), Status::YOKAN_SUCCESS);
  EXPECT_EQ(get("empty"), "");
  size_t len = 99;
  EXPECT_EQ(db_->length("empty", &len), Status::YOKAN_SUCCESS);
  EXPECT_EQ(len, 0u);
  bool found = false;
  EXPECT_EQ(db_->exists("empty", &found), Status::YOKAN_SUCCESS);
  EXPECT_TRUE(found);
}

TEST_P(BackendTest, BinaryKeysAndValues) {
  open_default();
  const std::vector<std::string> ks = {bin("a\0b", 3), bin("a\0c", 3), "a",   bin("a\0", 2),
                                       bin("\0", 1),   "\xff\xfe",     "\x80"};
  for (size_t i = 0; i < ks.size(); ++i)
    ASSERT_EQ(db_->put(ks[i], val(bin("v\0", 2) + std::to_string(i))), Status::YOKAN_SUCCESS);
  for (size_t i = 0; i < ks.size(); ++i)
    EXPECT_EQ(get(ks[i]), val(bin("v\0", 2) + std::to_string(i))) << i;
  EXPECT_EQ(count(), ks.size());
  EXPECT_EQ(get(bin("a\0d", 3)), "<absent>");
}

TEST_P(BackendTest, PutBatchAndCount) {
  open_default();
  EXPECT_EQ(count(), 0u);
  std::vector<std::string> ks, vs;
  for (int i = 0; i < 100; ++i) {
    ks.push_back("key" + std::to_string(i));
    vs.push_back(val("value" + std::to_string(i)));
  }
  std::vector<std::pair<std::string_view, std::string_view>> pairs;
  for (size_t i = 0; i < ks.size(); ++i) pairs.emplace_back(ks[i], vs[i]);
  ASSERT_EQ(db_->put_batch(pairs), Status::YOKAN_SUCCESS);
  EXPECT_EQ(count(), 100u);
  for (size_t i = 0; i < ks.size(); ++i) EXPECT_EQ(get(ks[i]), vs[i]);
  for (int i = 0; i < 10; ++i) ASSERT_EQ(db_->erase(ks[i]), Status::YOKAN_SUCCESS);
  EXPECT_EQ(count(), 90u);
  ASSERT_EQ(db_->put_batch({}), Status::YOKAN_SUCCESS);
  EXPECT_EQ(count(), 90u);
}

// write_batch: erases first, then puts (a key in both ends up stored);
// erasing absent keys is fine; erase_batch erases; the result survives a
// reopen as one piece.
TEST_P(BackendTest, WriteBatchErasesThenPuts) {
  open_default();
  for (int i = 0; i < 20; ++i)
    ASSERT_EQ(db_->put("k" + std::to_string(i), val("old")), Status::YOKAN_SUCCESS);
  std::vector<std::string_view> erases = {"k0", "k1", "k2", "absent", "k3"};
  std::vector<std::pair<std::string_view, std::string_view>> puts;
  const std::string fresh = val("fresh"), back = val("back");
  puts.emplace_back("k3", back);  // erased and stored in one batch: stored
  puts.emplace_back("new1", fresh);
  puts.emplace_back("new2", fresh);
  ASSERT_EQ(db_->write_batch(erases, puts), Status::YOKAN_SUCCESS);
  EXPECT_EQ(count(), 19u);
  EXPECT_EQ(get("k0"), "<absent>");
  EXPECT_EQ(get("k2"), "<absent>");
  EXPECT_EQ(get("k3"), back);
  EXPECT_EQ(get("new2"), fresh);
  EXPECT_EQ(get("k4"), val("old"));
  ASSERT_EQ(db_->erase_batch({"k4", "k5", "nothing"}), Status::YOKAN_SUCCESS);
  EXPECT_EQ(count(), 17u);
  ASSERT_EQ(db_->write_batch({}, {}), Status::YOKAN_SUCCESS);
  if (!GetParam().needs_path) return;
  db_.reset();
  open_default();
  EXPECT_EQ(count(), 17u);
  EXPECT_EQ(get("k1"), "<absent>");
  EXPECT_EQ(get("k3"), back);
  EXPECT_EQ(get("k5"), "<absent>");
  EXPECT_EQ(get("new1"), fresh);
}

// Batches in every order a caller may send: ascending runs (the neighbour
// fast path), descending, repeated keys, gaps, absent keys, new keys landing
// between existing ones. Each read must match a key-by-key get().
TEST_P(BackendTest, BatchesInAnyOrder) {
  open_default();
  auto key = [](int i) {
    char b[16];
    std::snprintf(b, sizeof b, "k%05d", i);
    return std::string(b);
  };
  std::vector<int> order = {10, 11, 12, 13, 40, 41, 5, 4, 3, 12, 12, 60, 61, 62, 1, 99, 98, 50};
  std::vector<std::string> ks, vs;
  for (int i : order) {
    ks.push_back(key(i));
    vs.push_back(val("v" + std::to_string(i) + "-" + std::to_string(ks.size())));
  }
  std::vector<std::pair<std::string_view, std::string_view>> pairs;
  for (size_t i = 0; i < ks.size(); ++i) pairs.emplace_back(ks[i], vs[i]);
  ASSERT_EQ(db_->put_batch(pairs), Status::YOKAN_SUCCESS);
  // Fill the gaps afterwards, ascending: inserts between existing keys.
  pairs.clear();
  std::vector<std::string> gap_keys, gap_vals;
  for (int i = 0; i < 100; i += 7) {
    gap_keys.push_back(key(i) + "+");
    gap_vals.push_back(val("gap" + std::to_string(i)));
  }
  for (size_t i = 0; i < gap_keys.size(); ++i) pairs.emplace_back(gap_keys[i], gap_vals[i]);
  ASSERT_EQ(db_->put_batch(pairs), Status::YOKAN_SUCCESS);

  std::vector<std::string> probe;
  for (int i = 0; i < 100; ++i) probe.push_back(key(i));
  for (int i = 99; i >= 0; i -= 3) probe.push_back(key(i));
  for (auto& g : gap_keys) probe.push_back(g);
  probe.push_back(key(12));
  probe.push_back(key(12));
  std::vector<std::string_view> views(probe.begin(), probe.end());
  std::vector<std::string> got(probe.size(), "<unvisited>");
  ASSERT_EQ(db_->get_batch(views,
                           [&](size_t i, const std::string_view* v) {
                             got[i] = v ? std::string(*v) : std::string("<absent>");
                           }),
            Status::YOKAN_SUCCESS);
  for (size_t i = 0; i < probe.size(); ++i) EXPECT_EQ(got[i], get(probe[i])) << probe[i];
  // The last write of a repeated key wins.
  EXPECT_EQ(get(key(12)), vs[10]);
  EXPECT_EQ(get(key(50)), vs.back());
  EXPECT_EQ(count(), 16u + gap_keys.size());
}

// A lent value stays intact while the key is overwritten, erased or
// rewritten in place; every backend answers lend() like get().
TEST_P(BackendTest, LentValuesOutliveWrites) {
  open_default();
  if (!values()) {  // set / unordered_set store no values, so there is nothing to lend
    EXPECT_EQ(db_->put("big", std::string(200 * 1024, 'a')), Status::YOKAN_ERR_INVALID_ARGS);
    return;
  }
  const std::string big1(200 * 1024, 'a'), big2(300 * 1024, 'b'), big3(100 * 1024, 'c');
  ASSERT_EQ(db_->put("big", big1), Status::YOKAN_SUCCESS);
  std::shared_ptr<const void> owner;
  std::string_view lent;
  auto lend = [&](std::string_view key) {
    owner.reset();
    lent = {};
    return db_->lend(
        key, [&](std::string_view v) { lent = v; }, &owner);
  };
  EXPECT_EQ(lend("absent"), Status::YOKAN_ERR_KEY_NOT_FOUND);
  ASSERT_EQ(lend("big"), Status::YOKAN_SUCCESS);
  // The in-memory stores lend (array is a map that only the document layer reaches).
  const std::string& type = GetParam().type;
  const bool lends = type == "map" || type == "unordered_map" || type == "array";
  ASSERT_EQ(owner != nullptr, lends);
  if (!lends) return;  // the view was only valid during the call
  EXPECT_EQ(lent, big1);
  ASSERT_EQ(db_->put("big", big2), Status::YOKAN_SUCCESS);  // lent: a new block
  EXPECT_EQ(lent, big1);
  EXPECT_EQ(get("big"), big2);
  ASSERT_EQ(db_->erase("big"), Status::YOKAN_SUCCESS);
  EXPECT_EQ(lent, big1);
  owner.reset();
  // Not lent any more: overwrites reuse the block, reads see each version.
  ASSERT_EQ(db_->put("big", big2), Status::YOKAN_SUCCESS);
  ASSERT_EQ(db_->put("big", big3), Status::YOKAN_SUCCESS);
  EXPECT_EQ(get("big"), big3);
  // Small values are not lent.
  ASSERT_EQ(db_->put("big", "small now"), Status::YOKAN_SUCCESS);
  ASSERT_EQ(lend("big"), Status::YOKAN_SUCCESS);
  EXPECT_EQ(owner, nullptr);
}

TEST_P(BackendTest, IterateAll) {
  open_default();
  std::set<std::string> expected;
  for (int i = 0; i < 50; ++i) {
    std::string k = "k" + std::to_string(i * 7919 % 50);
    expected.insert(k);
    ASSERT_EQ(db_->put(k, val("v" + k)), Status::YOKAN_SUCCESS);
  }
  std::map<std::string, std::string> seen;
  Status s = db_->iterate({}, true, true, [&](std::string_view k, std::string_view v) {
    seen.emplace(std::string(k), std::string(v));
    return true;
  });
  ASSERT_EQ(s, Status::YOKAN_SUCCESS);
  ASSERT_EQ(seen.size(), expected.size());
  for (const auto& [k, v] : seen) {
    EXPECT_TRUE(expected.count(k)) << k;
    EXPECT_EQ(v, val("v" + k));
  }
  // Early stop works on unsorted backends too.
  EXPECT_EQ(keys({}, true, 5).size(), 5u);
}

TEST_P(BackendTest, IterateSortedOrderFromAndStop) {
  open_default();
  if (!db_->traits().sorted) GTEST_SKIP() << "unsorted";
  // Prefixes, NUL and high bytes: bytewise order, shorter key first on a prefix.
  std::vector<std::string> ks = {"b",    "abc",  "a",      "ab",           "abd", bin("a\0", 2),
                                 "\x80", "\xff", "ab\xff", bin("\x01", 1), "zz",  "abcd"};
  for (const auto& k : ks) ASSERT_EQ(db_->put(k, val("v")), Status::YOKAN_SUCCESS);
  std::vector<std::string> sorted = ks;
  std::sort(sorted.begin(), sorted.end());  // std::string compares as unsigned bytes
  EXPECT_EQ(keys(), sorted);

  auto from = [&](const std::string& f, bool incl) {
    std::vector<std::string> out;
    for (const auto& k : sorted)
      if (incl ? k >= f : k > f) out.push_back(k);
    return out;
  };
  EXPECT_EQ(keys("ab", true), from("ab", true));
  EXPECT_EQ(keys("ab", false), from("ab", false));
  EXPECT_EQ(keys("ab", false).front(), "abc");
  EXPECT_EQ(keys("aa", false), from("aa", false));  // absent start key
  EXPECT_EQ(keys("abcd", false), from("abcd", false));
  EXPECT_TRUE(keys("\xff", false).empty());
  EXPECT_EQ(keys("ab", true, 3), std::vector<std::string>({"ab", "abc", "abcd"}));

  // Values come along with their keys.
  if (values()) {
    ASSERT_EQ(db_->put("abc", "VALUE"), Status::YOKAN_SUCCESS);
    std::string got;
    db_->iterate("abc", true, true, [&](std::string_view, std::string_view v) {
      got.assign(v);
      return false;
    });
    EXPECT_EQ(got, "VALUE");
  }
}

TEST_P(BackendTest, ConcurrentWriters) {
  open_default();
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 100; ++i) {
        std::string k = "t" + std::to_string(t) + "-" + std::to_string(i);
        if (!yokan::ok(db_->put(k, val(k)))) ++failures;
        std::string out;
        if (!yokan::ok(db_->get(k, [&](std::string_view v) { out.assign(v); })) || out != val(k))
          ++failures;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(count(), 400u);
}

// The provider calls use_idle_time() from its progress thread while
// handlers write: whatever it does must leave every pair intact.
TEST_P(BackendTest, IdleWorkDuringWritesKeepsData) {
  open_default();
  std::atomic<bool> stop{false};
  std::atomic<long> steps{0};
  std::thread idle([&] {
    while (!stop.load()) steps += db_->use_idle_time() ? 1 : 0;
  });
  std::map<std::string, std::string> expected;
  for (int i = 0; i < 3000; ++i) {
    std::string k = "idle" + std::to_string(i * 7919 % 3000);
    if (i % 10 == 9) {
      ASSERT_EQ(db_->erase(k), Status::YOKAN_SUCCESS);
      expected.erase(k);
      continue;
    }
    std::string v = val(std::string(i % 5 == 0 ? 1500 : 20 + i % 90, char('a' + i % 26)));
    ASSERT_EQ(db_->put(k, v), Status::YOKAN_SUCCESS);
    expected[k] = v;
  }
  stop = true;
  idle.join();
  EXPECT_EQ(count(), expected.size());
  for (const auto& [k, v] : expected) ASSERT_EQ(get(k), v) << k;
}

TEST_P(BackendTest, CompletedConfig) {
  open_default();
  json c = db_->config();
  ASSERT_TRUE(c.is_object());
  if (GetParam().needs_path) {
    EXPECT_EQ(c.value("path", ""), config()["path"]);
  }
  if (GetParam().bool_key) EXPECT_TRUE(c.contains(GetParam().bool_key)) << c.dump();
  for (const auto& [k, v] : GetParam().extra.items()) EXPECT_EQ(c[k], v) << k;
  // The completed config is accepted as is (e.g. by a restarted provider).
  db_.reset();
  std::string err;
  EXPECT_EQ(open(&db_, c, &err), Status::YOKAN_SUCCESS) << err;
}

TEST_P(BackendTest, ConfigErrorsNameTheKey) {
  std::unique_ptr<Backend> db;
  std::string err;
  json c = config();
  c["no_such_option"] = 1;
  EXPECT_EQ(open(&db, c, &err), Status::YOKAN_ERR_INVALID_CONFIG);
  EXPECT_NE(err.find("no_such_option"), std::string::npos) << err;

  if (GetParam().bool_key) {
    c = config();
    c[GetParam().bool_key] = "yes";
    EXPECT_EQ(open(&db, c, &err), Status::YOKAN_ERR_INVALID_CONFIG);
    EXPECT_NE(err.find(GetParam().bool_key), std::string::npos) << err;
  }
  EXPECT_EQ(open(&db, json::array(), &err), Status::YOKAN_ERR_INVALID_CONFIG);

  if (GetParam().needs_path) {
    c = config();
    c["path"] = 42;
    EXPECT_EQ(open(&db, c, &err), Status::YOKAN_ERR_INVALID_CONFIG);
    EXPECT_NE(err.find("path"), std::string::npos) << err;
    if (GetParam().type != "berkeleydb") {  // berkeleydb: no path means in memory
      c.erase("path");
      EXPECT_EQ(open(&db, c, &err), Status::YOKAN_ERR_INVALID_CONFIG);
      EXPECT_NE(err.find("path"), std::string::npos) << err;
    }
  }
  EXPECT_FALSE(db);
}

TEST_P(BackendTest, NestedAndChoiceConfigErrors) {
  std::unique_ptr<Backend> db;
  std::string err;
  const std::string& type = GetParam().type;
  json c = config();
  std::string key;
  if (type == "rocksdb" || type == "leveldb") {
    c["write_options"] = {{"sync", "no"}};
    key = "sync";
  } else if (type == "berkeleydb" || type == "tkrzw") {
    c["type"] = "skiplist";
    key = "type";
  } else {
    GTEST_SKIP() << "no nested or choice key";
  }
  EXPECT_EQ(open(&db, c, &err), Status::YOKAN_ERR_INVALID_CONFIG);
  EXPECT_NE(err.find(key), std::string::npos) << err;
}

TEST_P(BackendTest, ReopenKeepsData) {
  if (!GetParam().needs_path) GTEST_SKIP() << "not persistent";
  open_default();
  for (int i = 0; i < 50; ++i)
    ASSERT_EQ(db_->put("key" + std::to_string(i), "value" + std::to_string(i)),
              Status::YOKAN_SUCCESS);
  ASSERT_EQ(db_->erase("key7"), Status::YOKAN_SUCCESS);
  db_.reset();  // closes, must not delete
  open_default();
  EXPECT_EQ(count(), 49u);
  EXPECT_EQ(get("key3"), "value3");
  EXPECT_EQ(get("key7"), "<absent>");
  // And once more after a flush and an overwrite.
  ASSERT_EQ(db_->put("key3", "new"), Status::YOKAN_SUCCESS);
  ASSERT_EQ(db_->flush(), Status::YOKAN_SUCCESS);
  db_.reset();
  open_default();
  EXPECT_EQ(get("key3"), "new");
  EXPECT_EQ(count(), 49u);
}

TEST_P(BackendTest, DoubleOpenFails) {
  if (!GetParam().needs_path) GTEST_SKIP() << "not persistent";
  open_default();
  std::unique_ptr<Backend> second;
  std::string err;
  EXPECT_EQ(open(&second, config(), &err), Status::YOKAN_ERR_PERMISSION);
  EXPECT_NE(err.find("already open"), std::string::npos) << err;
  EXPECT_FALSE(second);
  // The first one is unaffected, and once it is closed the path opens again.
  ASSERT_EQ(db_->put("k", "v"), Status::YOKAN_SUCCESS);
  db_.reset();
  EXPECT_EQ(open(&second, config(), &err), Status::YOKAN_SUCCESS) << err;
  ASSERT_TRUE(second);
  std::string out;
  EXPECT_EQ(second->get("k", [&](std::string_view v) { out.assign(v); }), Status::YOKAN_SUCCESS);
  EXPECT_EQ(out, "v");
}

constexpr int kCrashKeys = 300;

// The crash test: a child process (this binary, see run_crash_child) opens the
// backend, writes, reports "done" through a pipe and waits; it is SIGKILLed
// and every acknowledged write must be found by a fresh open.
TEST_P(BackendTest, AcknowledgedWritesSurviveSigkill) {
  if (!GetParam().needs_path) GTEST_SKIP() << "not persistent";
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  std::string conf = config().dump();
  std::string wfd = std::to_string(fds[1]);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Exec right away: the child must not inherit the library state of this
    // multi-threaded test process.
    close(fds[0]);
    execl("/proc/self/exe", "test_backends", "--crash-child", GetParam().type.c_str(), conf.c_str(),
          wfd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  char buf[16] = {0};
  ssize_t n = 0, got = 0;
  while (got < 4 && (n = read(fds[0], buf + got, 4 - got)) > 0) got += n;
  close(fds[0]);
  if (got == 4) {
    // While the child holds it, the path cannot be opened from this process either.
    std::unique_ptr<Backend> other;
    std::string err;
    EXPECT_EQ(open(&other, config(), &err), Status::YOKAN_ERR_PERMISSION) << err;
  }
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_EQ(std::string(buf, got), "done") << "the child failed before acknowledging";
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

  open_default();
  for (int i = 0; i < kCrashKeys; ++i)
    EXPECT_EQ(get("crash" + std::to_string(i)), "value" + std::to_string(i)) << i;
  EXPECT_EQ(get("batch-a"), "A");
  EXPECT_EQ(get("batch-b"), "B");
  EXPECT_EQ(get("erased"), "<absent>");
  EXPECT_EQ(count(), kCrashKeys + 2u);
}

std::string param_name(const ::testing::TestParamInfo<Variant>& info) { return info.param.label; }

INSTANTIATE_TEST_SUITE_P(AllBackends, BackendTest, ::testing::ValuesIn(all_variants()), param_name);

bool compiled(const std::string& type) {
  auto names = yokan::available_backends();
  return std::find(names.begin(), names.end(), type) != names.end();
}

// A temporary directory removed at the end of a test.
struct TempDir {
  std::string path = make_temp_dir();
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

TEST(BerkeleyDB, HomeDirectoryHoldsTheFile) {
  if (!compiled("berkeleydb")) GTEST_SKIP();
  TempDir dir;
  json c = {{"home", dir.path + "/env"}, {"path", "data.db"}};
  std::unique_ptr<Backend> db;
  std::string err;
  ASSERT_EQ(yokan::create_backend("berkeleydb", c, &db, &err), Status::YOKAN_SUCCESS) << err;
  EXPECT_TRUE(db->traits().persistent);
  ASSERT_EQ(db->put("k", "v"), Status::YOKAN_SUCCESS);
  db.reset();
  EXPECT_TRUE(std::filesystem::exists(dir.path + "/env/yokan/data.db"));
  ASSERT_EQ(yokan::create_backend("berkeleydb", c, &db, &err), Status::YOKAN_SUCCESS) << err;
  bool found = false;
  EXPECT_EQ(db->exists("k", &found), Status::YOKAN_SUCCESS);
  EXPECT_TRUE(found);
}

TEST(Tkrzw, ReadOnlyOpens) {
  if (!compiled("tkrzw")) GTEST_SKIP();
  TempDir dir;
  for (const char* type : {"tree", "hash", "tiny", "baby"}) {
    SCOPED_TRACE(type);
    std::string path = dir.path + "/" + type + ".tkh";
    std::unique_ptr<Backend> db, db2;
    std::string err;
    json ro = {{"type", type}, {"path", path}, {"writable", false}};
    // A missing file cannot be opened read-only.
    EXPECT_NE(yokan::create_backend("tkrzw", ro, &db, &err), Status::YOKAN_SUCCESS);
    json rw = {{"type", type}, {"path", path}};
    ASSERT_EQ(yokan::create_backend("tkrzw", rw, &db, &err), Status::YOKAN_SUCCESS) << err;
    ASSERT_EQ(db->put("k", "v"), Status::YOKAN_SUCCESS);
    db.reset();
    // Two readers may share the file; writes are refused.
    ASSERT_EQ(yokan::create_backend("tkrzw", ro, &db, &err), Status::YOKAN_SUCCESS) << err;
    ASSERT_EQ(yokan::create_backend("tkrzw", ro, &db2, &err), Status::YOKAN_SUCCESS) << err;
    std::string out;
    EXPECT_EQ(db2->get("k", [&](std::string_view v) { out.assign(v); }), Status::YOKAN_SUCCESS);
    EXPECT_EQ(out, "v");
    EXPECT_NE(db->put("k2", "v"), Status::YOKAN_SUCCESS);
    // A writer is excluded while readers hold the path.
    std::unique_ptr<Backend> writer;
    EXPECT_EQ(yokan::create_backend("tkrzw", rw, &writer, &err), Status::YOKAN_ERR_PERMISSION);
  }
}

// The child of the crash test: writes and acknowledges, then waits to be killed.
int run_crash_child(const char* type, const char* conf, int fd) {
  std::unique_ptr<Backend> db;
  std::string err;
  if (!yokan::ok(yokan::create_backend(type, json::parse(conf), &db, &err))) {
    fprintf(stderr, "crash child: open failed: %s\n", err.c_str());
    return 1;
  }
  for (int i = 0; i < kCrashKeys; ++i)
    if (!yokan::ok(db->put("crash" + std::to_string(i), "value" + std::to_string(i)))) return 2;
  if (!yokan::ok(db->put_batch({{"batch-a", "A"}, {"batch-b", "B"}}))) return 3;
  if (!yokan::ok(db->put("erased", "x")) || !yokan::ok(db->erase("erased"))) return 4;
  if (write(fd, "done", 4) != 4) return 5;
  for (;;) pause();  // never closes the database: only SIGKILL ends this
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 5 && std::strcmp(argv[1], "--crash-child") == 0)
    return run_crash_child(argv[2], argv[3], std::atoi(argv[4]));
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
