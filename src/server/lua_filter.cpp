// Lua 5.4 key/value filters, with a time and a memory budget per request so
// that a script that loops forever or allocates without bound is stopped and
// reported instead of hanging the provider.
//
// Document filters run in the same kind of state, with __collection__,
// __id__ and __doc__ as globals and the lua-cjson module as the global
// `cjson`. The module is loaded at run time from the system's lua-cjson
// library (Debian: lua-cjson); if it cannot be loaded, `cjson` is absent, so
// scripts that use it fail with a runtime error.
//
// The budget holds against every escape we know of (docs/design/lua-filters.md):
// source text only (no bytecode), no script-defined __gc finalizers (hooks are
// off during collection), pattern functions refused when their worst case
// exceeds the time left, and cjson's malloc'd buffers bounded by the memory
// left. A runtime error is reported to the caller, never read as "no match".
#ifdef YOKAN_HAVE_LUA
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>

extern "C" {
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
}

#include "server/filter.hpp"

namespace yokan {

namespace {

using Clock = std::chrono::steady_clock;

// When the request being served arrived (set by the provider's filter pool):
// the time budget counts from then, so waiting in the queue uses it up too.
thread_local Clock::time_point request_arrival{};

// How many steps of pattern_cost's bound we allow per millisecond of budget.
// Measured with Debian's Lua 5.4.4 on the dev machine: 0.003 to 0.5 ns per
// bound step for find/match (the bound is loose for backtracking patterns),
// at most ~4 ns for gsub (it also copies the output); 50 ns leaves over ten
// times that on a loaded machine.
constexpr double kPatternStepsPerMs = 20000;

// A sound upper bound on the steps Lua's backtracking matcher (lstrlib.c) can
// take for `pattern` over a subject of n bytes, for one call of find/match or
// a whole gmatch/gsub loop. Lua quantifiers apply to one character class
// only, so backtracking is polynomial: each `*`, `+` or `-` can retry the rest
// of the pattern at up to n+1 positions, `?` at 2; %b and back-references
// (%1-%9) scan up to n bytes each time they are tried; an unanchored search
// tries every start position. Plain finds use the same formula (no
// quantifiers): memchr + memcmp is O(n * m) at worst.
double pattern_cost(std::string_view p, double n, bool plain) {
  const double n1 = n + 1;
  // memchr and memcmp are vectorised: 0.03 ns per bound step measured, so a
  // tenth of a matcher step each still leaves a margin of over 100 times.
  if (plain) return n1 * (static_cast<double>(p.size()) + 1) / 10;
  size_t i = 0;
  const bool anchored = !p.empty() && p[0] == '^';
  if (anchored) i = 1;
  double branch = 1, items = 0, linear = 0;
  while (i < p.size()) {
    const char c = p[i];
    size_t end;  // one past the single-character class
    if (c == '(' || c == ')') {
      ++i;
      ++items;
      continue;
    }
    if (c == '%' && i + 1 < p.size()) {
      const char d = p[i + 1];
      if (d == 'b') {
        i += 4;
        ++items;
        ++linear;
        continue;
      }
      if (d >= '0' && d <= '9') {
        i += 2;
        ++items;
        ++linear;
        continue;
      }
      if (d == 'f') {
        i += 2;  // the set that follows is scanned like a class below, once
        ++items;
        continue;
      }
      end = i + 2;
    } else if (c == '[') {
      end = i + 1;
      if (end < p.size() && p[end] == '^') ++end;
      do {  // the first ']' is a member, as in Lua
        if (end >= p.size()) break;
        if (p[end] == '%') ++end;
        ++end;
      } while (end < p.size() && p[end] != ']');
      ++end;
    } else {
      end = i + 1;
    }
    ++items;
    if (end < p.size()) {
      const char q = p[end];
      if (q == '*' || q == '+' || q == '-') {
        branch *= n1;
        ++end;
      } else if (q == '?') {
        branch *= 2;
        ++end;
      }
    }
    i = end;
  }
  // Per level: the expansion loop (n) plus n+1 tries of the rest; unrolled,
  // at most branch * (2 * items + 1 + linear * (n + 1)) steps per start.
  return (anchored ? 1 : n1) * branch * (2 * items + 1 + linear * n1);
}

using LuaOpen = int (*)(lua_State*);

// luaopen_cjson from the system's lua-cjson library, or null. The library
// does not link Lua itself, so the Lua library this one uses is first made
// global (it is already loaded; RTLD_NOLOAD only changes its visibility).
LuaOpen cjson_opener() {
  static LuaOpen opener = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    Dl_info info;
    if (dladdr(reinterpret_cast<void*>(&lua_newstate), &info) && info.dli_fname)
      dlopen(info.dli_fname, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
    for (const char* name : {"liblua5.4-cjson.so.0", "liblua5.4-cjson.so", "cjson.so"}) {
      void* lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
      if (!lib) continue;
      if (void* sym = dlsym(lib, "luaopen_cjson")) {
        opener = reinterpret_cast<LuaOpen>(sym);
        return;
      }
    }
  });
  return opener;
}

class LuaFilter final : public KeyFilter {
 public:
  LuaFilter(bool with_value, const LuaLimits& limits, bool document = false)
      : with_value_(with_value), document_(document), limits_(limits) {}
  ~LuaFilter() override {
    if (L_) lua_close(L_);
  }

  Status init(std::string_view code, std::string* error) {
    L_ = lua_newstate(&LuaFilter::allocate, this);
    if (!L_) return Status::YOKAN_ERR_ALLOCATION;
    // Only the safe libraries: no io, os, package or debug.
    luaL_requiref(L_, "_G", luaopen_base, 1);
    luaL_requiref(L_, LUA_STRLIBNAME, luaopen_string, 1);
    luaL_requiref(L_, LUA_MATHLIBNAME, luaopen_math, 1);
    luaL_requiref(L_, LUA_TABLIBNAME, luaopen_table, 1);
    if (document_) {
      if (LuaOpen open_cjson = cjson_opener()) luaL_requiref(L_, "cjson", open_cjson, 1);
    }
    lua_settop(L_, 0);
    for (const char* name : {"dofile", "loadfile", "load", "require", "collectgarbage"}) {
      lua_pushnil(L_);
      lua_setglobal(L_, name);
    }
    const Clock::time_point start =
        request_arrival == Clock::time_point{} ? Clock::now() : request_arrival;
    deadline_ = start + std::chrono::duration_cast<Clock::duration>(
                            std::chrono::duration<double, std::milli>(limits_.time_ms));
    // The guards are set up in a protected call: they allocate.
    lua_pushcfunction(L_, &LuaFilter::install_guards);
    lua_pushlightuserdata(L_, this);
    if (lua_pcall(L_, 1, 0, 0) != LUA_OK) {
      if (error) *error = std::string("Lua filter setup failed: ") + lua_tostring(L_, -1);
      return Status::YOKAN_ERR_INVALID_FILTER;
    }
    lua_sethook(L_, &LuaFilter::hook, LUA_MASKCOUNT, 1000);
    // Text only: Lua has no bytecode verifier, so a crafted binary chunk can
    // crash the process. Mode "t" refuses a chunk that starts with ESC "Lua".
    if (luaL_loadbufferx(L_, code.data(), code.size(), "filter", "t") != LUA_OK) {
      if (error) *error = std::string("Lua filter does not compile: ") + lua_tostring(L_, -1);
      return Status::YOKAN_ERR_INVALID_FILTER;
    }
    chunk_ref_ = luaL_ref(L_, LUA_REGISTRYINDEX);
    return Status::YOKAN_SUCCESS;
  }

  bool needs_value() const override { return with_value_; }

  // A document: the collection name goes in key_, the document in value_.
  bool accept_doc(std::string_view collection, uint64_t id, std::string_view doc) {
    id_ = id;
    return accept(collection, doc);
  }

  bool accept(std::string_view key, std::string_view value) override {
    if (!ok(failed())) return false;
    key_ = key;
    value_ = value;
    // Everything that may allocate runs inside the protected call: an
    // allocation refused outside one would abort the process.
    lua_pushcfunction(L_, &LuaFilter::run);
    lua_pushlightuserdata(L_, this);
    int rc = lua_pcall(L_, 1, 1, 0);
    if (out_of_time_ || rc == LUA_ERRMEM) {
      fail(Status::YOKAN_ERR_INVALID_FILTER, out_of_time_ ? "Lua filter exceeded its time limit"
                                                          : "Lua filter exceeded its memory limit");
      lua_settop(L_, 0);
      return false;
    }
    if (rc != LUA_OK) {
      // A runtime error fails the request with Lua's message: read as "no
      // match" it would silently hide bugs in the script.
      const char* msg = lua_tostring(L_, -1);
      fail(Status::YOKAN_ERR_INVALID_FILTER,
           std::string("Lua filter raised an error: ") + (msg ? msg : "(not a string)"));
      lua_settop(L_, 0);
      return false;
    }
    bool pass = lua_toboolean(L_, -1);
    lua_settop(L_, 0);
    return pass;
  }

 private:
  static void* allocate(void* ud, void* ptr, size_t old_size, size_t new_size) {
    auto* self = static_cast<LuaFilter*>(ud);
    size_t old_real = ptr ? old_size : 0;
    if (new_size == 0) {
      self->used_ -= old_real;
      std::free(ptr);
      return nullptr;
    }
    // Refusing makes Lua collect garbage and retry; if that fails too the
    // script gets a memory error (LUA_ERRMEM).
    if (self->used_ - old_real + new_size > self->limits_.memory_bytes) return nullptr;
    void* p = std::realloc(ptr, new_size);
    if (p) self->used_ = self->used_ - old_real + new_size;
    return p;
  }

  static LuaFilter* self_of(lua_State* L) {
    void* ud = nullptr;
    lua_getallocf(L, &ud);
    return static_cast<LuaFilter*>(ud);
  }

  double remaining_ms() const {
    return std::chrono::duration<double, std::milli>(deadline_ - Clock::now()).count();
  }

  // setmetatable that refuses a metatable with a __gc field: Lua 5.4 marks an
  // object for finalization only if __gc is present when the metatable is
  // set, and finalizers run with hooks off (no time limit), also in lua_close.
  static int safe_setmetatable(lua_State* L) {
    if (lua_type(L, 2) == LUA_TTABLE) {
      lua_pushliteral(L, "__gc");
      if (lua_rawget(L, 2) != LUA_TNIL)
        return luaL_error(L, "metatables with __gc are not allowed in filters");
      lua_pop(L, 1);
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
  }

  // string.find/match/gmatch/gsub: refused before they start when their worst
  // case could overrun the time left (the C matcher cannot be interrupted).
  static int bounded_pattern(lua_State* L) {
    size_t n = 0, m = 0;
    luaL_checklstring(L, 1, &n);
    const char* p = luaL_checklstring(L, 2, &m);
    const bool is_find = lua_toboolean(L, lua_upvalueindex(2));
    const bool plain = is_find && lua_toboolean(L, 4);
    const double cost = pattern_cost(std::string_view(p, m), static_cast<double>(n), plain);
    LuaFilter* self = self_of(L);
    const double allowed = std::max(0.0, self->remaining_ms()) * kPatternStepsPerMs;
    if (!(cost <= allowed))
      return luaL_error(L,
                        "pattern could exceed the filter's time budget (worst case %f steps on a "
                        "subject of %d bytes, %f allowed in the time left); use fewer "
                        "quantifiers or a shorter subject",
                        cost, static_cast<int>(std::min<size_t>(n, 1u << 30)), allowed);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
  }

  // string.rep('', n) with an empty separator loops n times in C without
  // allocating (lstrlib's copy loop), for n up to 2^63: answer it here.
  static int safe_rep(lua_State* L) {
    size_t l = 0, lsep = 0;
    luaL_checklstring(L, 1, &l);
    luaL_checkinteger(L, 2);
    luaL_optlstring(L, 3, "", &lsep);
    if (l + lsep == 0) {
      lua_pushliteral(L, "");
      return 1;
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
  }

  // The bytes the script may still allocate, for the cjson guards.
  static int memory_left(lua_State* L) {
    LuaFilter* self = self_of(L);
    const size_t cap = self->limits_.memory_bytes;
    lua_pushinteger(L, static_cast<lua_Integer>(cap - std::min(self->used_, cap)));
    return 1;
  }

  static int install_guards(lua_State* L) {
    lua_getglobal(L, "setmetatable");
    lua_pushcclosure(L, &LuaFilter::safe_setmetatable, 1);
    lua_setglobal(L, "setmetatable");
    lua_getglobal(L, LUA_STRLIBNAME);  // also the strings' __index table
    for (const char* name : {"find", "match", "gmatch", "gsub"}) {
      lua_getfield(L, -1, name);
      lua_pushboolean(L, std::strcmp(name, "find") == 0);
      lua_pushcclosure(L, &LuaFilter::bounded_pattern, 2);
      lua_setfield(L, -2, name);
    }
    lua_getfield(L, -1, "rep");
    lua_pushcclosure(L, &LuaFilter::safe_rep, 1);
    lua_setfield(L, -2, "rep");
    lua_pop(L, 1);
    // table.move(a, f, e, t) loops e - f + 1 times in C, up to 2^63, with no
    // allocation when it copies nils: the same loop in Lua runs under the hook.
    static const char kTableMove[] = R"lua(
local t = ...
local type, error = type, error
t.move = function(a1, f, e, tpos, a2)
  a2 = a2 == nil and a1 or a2
  if type(a1) ~= 'table' or type(a2) ~= 'table' then error('table.move: tables expected', 2) end
  if e >= f then
    if tpos > e or tpos <= f or a1 ~= a2 then
      for i = 0, e - f do a2[tpos + i] = a1[f + i] end
    else
      for i = e - f, 0, -1 do a2[tpos + i] = a1[f + i] end
    end
  end
  return a2
end
)lua";
    if (luaL_loadbufferx(L, kTableMove, sizeof kTableMove - 1, "table.move", "t") != LUA_OK)
      return lua_error(L);
    lua_getglobal(L, LUA_TABLIBNAME);
    lua_call(L, 1, 0);
    if (lua_getglobal(L, "cjson") == LUA_TTABLE) {
      // cjson's encode/decode buffers are malloc'd, outside the allocator
      // that enforces the memory limit: bound them by the memory left.
      static const char kCjsonGuard[] = R"lua(
local cj, left = ...
local enc, dec = cj.encode, cj.decode
local type, pairs, next, error = type, pairs, next, error
if cj.encode_keep_buffer then cj.encode_keep_buffer(false) end
-- An upper bound on the encoded size (every byte escaped as \u00XX), cut
-- short once it passes `budget`. Runs as Lua, so the time limit holds.
local function size(v, depth, budget)
  local t = type(v)
  if t == 'string' then return 6 * #v + 2 end
  if t ~= 'table' then return 34 end
  if depth > 1000 then error('cjson.encode: nesting deeper than 1000', 0) end
  local total = 2
  for k, x in next, v do  -- not pairs: a __pairs could hide what cjson sees
    total = total + (type(k) == 'string' and 6 * #k + 2 or 34) + 2
    if total > budget then break end
    total = total + size(x, depth + 1, budget - total)
    if total > budget then break end
  end
  return total
end
local safe = {}
for k, f in pairs(cj) do
  if k ~= 'new' and k ~= 'encode_keep_buffer' then safe[k] = f end
end
safe.encode = function(v)
  -- the output buffer may grow to twice the output, and the result string is
  -- allocated by Lua too: three times the bound must fit
  local budget = left() // 3
  if size(v, 1, budget) > budget then
    error('cjson.encode: the output could exceed the filter memory limit', 2)
  end
  return enc(v)
end
safe.decode = function(s)
  if type(s) == 'string' and #s > left() then
    error('cjson.decode: the input exceeds the filter memory left', 2)
  end
  return dec(s)
end
return safe
)lua";
      if (luaL_loadbufferx(L, kCjsonGuard, sizeof kCjsonGuard - 1, "cjson guard", "t") != LUA_OK)
        return lua_error(L);
      lua_insert(L, -2);
      lua_pushcfunction(L, &LuaFilter::memory_left);
      lua_call(L, 2, 1);
      lua_setglobal(L, "cjson");
    }
    return 0;
  }

  static int run(lua_State* L) {
    auto* self = static_cast<LuaFilter*>(lua_touserdata(L, 1));
    if (self->document_) {
      lua_pushnil(L);
      lua_setglobal(L, "__doc__");
      lua_pushlstring(L, self->key_.data(), self->key_.size());
      lua_setglobal(L, "__collection__");
      lua_pushinteger(L, static_cast<lua_Integer>(self->id_));
      lua_setglobal(L, "__id__");
      lua_pushlstring(L, self->value_.data(), self->value_.size());
      lua_setglobal(L, "__doc__");
      lua_rawgeti(L, LUA_REGISTRYINDEX, self->chunk_ref_);
      lua_call(L, 0, 1);
      return 1;
    }
    lua_pushlstring(L, self->key_.data(), self->key_.size());
    lua_setglobal(L, "__key__");
    if (self->with_value_) {
      // Drop the previous value first so that a collection can reclaim it.
      lua_pushnil(L);
      lua_setglobal(L, "__value__");
      lua_pushlstring(L, self->value_.data(), self->value_.size());
      lua_setglobal(L, "__value__");
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, self->chunk_ref_);
    lua_call(L, 0, 1);
    return 1;
  }

  static void hook(lua_State* L, lua_Debug*) {
    LuaFilter* self = self_of(L);
    if (!self->out_of_time_ && Clock::now() < self->deadline_) return;
    // Past the deadline: raise on every instruction, so that no pcall inside
    // the script can swallow the error for long.
    self->out_of_time_ = true;
    lua_sethook(L, &LuaFilter::hook, LUA_MASKCOUNT, 1);
    luaL_error(L, "time limit exceeded");
  }

  lua_State* L_ = nullptr;
  int chunk_ref_ = LUA_NOREF;
  bool with_value_;
  bool document_;
  uint64_t id_ = 0;
  LuaLimits limits_;
  size_t used_ = 0;
  std::string_view key_, value_;
  bool out_of_time_ = false;
  Clock::time_point deadline_;
};

class LuaDocFilter final : public DocFilter {
 public:
  explicit LuaDocFilter(const LuaLimits& limits) : lua_(false, limits, true) {}
  Status init(std::string_view code, std::string* error) { return lua_.init(code, error); }
  bool accept(std::string_view collection, uint64_t id, std::string_view doc) override {
    return lua_.accept_doc(collection, id, doc);
  }
  Status failed() const override { return lua_.failed(); }
  std::string message() const override { return lua_.message(); }

 private:
  LuaFilter lua_;
};

}  // namespace

void set_request_arrival(std::chrono::steady_clock::time_point t) { request_arrival = t; }

Status make_lua_doc_filter(std::string_view code, const LuaLimits& limits,
                           std::unique_ptr<DocFilter>* out, std::string* error) {
  auto f = std::make_unique<LuaDocFilter>(limits);
  Status s = f->init(code, error);
  if (ok(s)) *out = std::move(f);
  return s;
}

Status make_lua_filter(std::string_view code, bool with_value, const LuaLimits& limits,
                       std::unique_ptr<KeyFilter>* out, std::string* error) {
  auto f = std::make_unique<LuaFilter>(with_value, limits);
  Status s = f->init(code, error);
  if (ok(s)) *out = std::move(f);
  return s;
}

}  // namespace yokan
#else  // no Lua in this build

#include "server/filter.hpp"

namespace yokan {

void set_request_arrival(std::chrono::steady_clock::time_point) {}

static Status no_lua(std::string* error) {
  if (error) *error = "this build has no Lua support";
  return Status::YOKAN_ERR_MODE;
}

Status make_lua_doc_filter(std::string_view, const LuaLimits&, std::unique_ptr<DocFilter>*,
                           std::string* error) {
  return no_lua(error);
}

Status make_lua_filter(std::string_view, bool, const LuaLimits&, std::unique_ptr<KeyFilter>*,
                       std::string* error) {
  return no_lua(error);
}

}  // namespace yokan
#endif
