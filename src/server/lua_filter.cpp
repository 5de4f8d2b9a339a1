// Lua 5.4 key/value filters, with a time and a memory budget per request so
// that a script that loops forever or allocates without bound is stopped and
// reported instead of hanging the provider.
//
// Document filters run in the same kind of state, with __collection__,
// __id__ and __doc__ as globals and the lua-cjson module as the global
// `cjson`. The module is loaded at run time from the system's lua-cjson
// library (Debian: lua-cjson); if it cannot be loaded, `cjson` is absent, so
// scripts that use it fail and their documents are skipped.
#ifdef YOKAN_HAVE_LUA
#include <dlfcn.h>

#include <chrono>
#include <cstdlib>
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
    deadline_ = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double, std::milli>(limits_.time_ms));
    lua_sethook(L_, &LuaFilter::hook, LUA_MASKCOUNT, 1000);
    if (luaL_loadbuffer(L_, code.data(), code.size(), "filter") != LUA_OK) {
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
    bool pass = rc == LUA_OK && lua_toboolean(L_, -1);  // a script error rejects the pair
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
    void* ud = nullptr;
    lua_getallocf(L, &ud);
    auto* self = static_cast<LuaFilter*>(ud);
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
