// The Lua filter's budget guards (src/server/lua_filter.cpp), without an
// engine: each escape is refused quickly with YOKAN_ERR_INVALID_FILTER, and
// ordinary filters still work. Skipped when the build has no Lua.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>

#include "server/filter.hpp"

namespace {

using namespace yokan;
using Clock = std::chrono::steady_clock;

struct Outcome {
  Status status;  // of building or of running the filter
  bool passed = false;
  std::string message;
  double seconds = 0;
};

Outcome run(const std::string& code, std::string_view key = "key", std::string_view value = "v") {
  Outcome out;
  const auto t0 = Clock::now();
  std::unique_ptr<KeyFilter> filter;
  out.status = make_lua_filter(code, true, LuaLimits{}, &filter, &out.message);
  if (ok(out.status)) {
    out.passed = filter->accept(key, value);
    out.status = filter->failed();
    out.message = filter->message();
  }
  out.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return out;
}

class LuaFilterGuards : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!built_with_lua()) GTEST_SKIP() << "built without Lua";
  }
};

TEST_F(LuaFilterGuards, OrdinaryFiltersWork) {
  Outcome o = run("return __key__:find('^ke') ~= nil and __value__:match('^(%a)$') == 'v'");
  EXPECT_EQ(o.status, Status::YOKAN_SUCCESS) << o.message;
  EXPECT_TRUE(o.passed);
  o = run("return ('a,b,c'):gsub(',', ';') == 'a;b;c' and #string.rep('', 10) == 0");
  EXPECT_EQ(o.status, Status::YOKAN_SUCCESS) << o.message;
  EXPECT_TRUE(o.passed);
  o = run("local t = table.move({1, 2, 3}, 1, 3, 2) return t[4] == 3 and t[2] == 1");
  EXPECT_EQ(o.status, Status::YOKAN_SUCCESS) << o.message;
  EXPECT_TRUE(o.passed);
}

TEST_F(LuaFilterGuards, BinaryChunkRefused) {
  Outcome o = run(std::string("\x1bLuaT\0\x19\x93\r\n\x1a\n", 12));
  EXPECT_EQ(o.status, Status::YOKAN_ERR_INVALID_FILTER);
  EXPECT_NE(o.message.find("binary"), std::string::npos) << o.message;
}

TEST_F(LuaFilterGuards, RuntimeErrorReported) {
  Outcome o = run("error('broken script')");
  EXPECT_EQ(o.status, Status::YOKAN_ERR_INVALID_FILTER);
  EXPECT_NE(o.message.find("broken script"), std::string::npos) << o.message;
}

TEST_F(LuaFilterGuards, EscapesAreStoppedWithinBudget) {
  for (const char* code : {
           "setmetatable({}, {__gc = function() while true do end end}) return true",
           "return string.find(string.rep('a', 5000), string.rep('a-', 25) .. 'b')",
           "return (string.rep('a', 100000)):gsub('.-.-.-.-.-.-.-.-b', '')",
           "string.rep('', math.maxinteger) while true do end",
           "table.move({}, 1, math.maxinteger - 1, 2) return true",
       }) {
    Outcome o = run(code);
    EXPECT_EQ(o.status, Status::YOKAN_ERR_INVALID_FILTER) << code;
    EXPECT_FALSE(o.passed) << code;
    EXPECT_LT(o.seconds, 5.0) << code;  // budget 1 s; generous for a shared machine
  }
}

TEST_F(LuaFilterGuards, PatternCheckIsNotTooStrict) {
  // Quadratic at worst, so allowed: one quantifier on 1 KiB; anchored or
  // plain searches in 64 KiB.
  const std::string big = std::string(65536, 'y') + "z";
  for (const char* code :
       {"return __value__:sub(1, 1024):find('y+z') == nil", "return __value__:find('^y+z') ~= nil",
        "return __value__:find('yz', 1, true) ~= nil"}) {
    Outcome o = run(code, "k", big);
    EXPECT_EQ(o.status, Status::YOKAN_SUCCESS) << code << ": " << o.message;
    EXPECT_TRUE(o.passed) << code;
  }
  // The same unanchored search over 64 KiB could take ~n^2 steps: refused.
  Outcome o = run("return __value__:find('y+z') ~= nil", "k", big);
  EXPECT_EQ(o.status, Status::YOKAN_ERR_INVALID_FILTER);
  EXPECT_NE(o.message.find("time budget"), std::string::npos) << o.message;
}

}  // namespace
