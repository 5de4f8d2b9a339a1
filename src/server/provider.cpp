#include "yokan/provider.hpp"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>

#include "server/no_database.hpp"
#include "server/provider_impl.hpp"

namespace yokan {

namespace {

// Checks the optional "buffer_cache" section as upstream does and fills its
// defaults. The engine manages its own buffers, so the values have no effect
// here; they are still checked so that a config valid here is valid upstream
// and a typo is reported rather than silently kept.
void check_buffer_cache(json& config) {
  if (!config.contains("buffer_cache")) {
    config["buffer_cache"] = {{"type", "lru"}};
    return;
  }
  json& bc = config["buffer_cache"];
  auto bad = [](const std::string& what) {
    throw Exception(Status::YOKAN_ERR_INVALID_CONFIG, "\"buffer_cache" + what);
  };
  if (!bc.is_object()) bad("\" must be an object");
  if (!bc.contains("type")) bc["type"] = "lru";
  const json& type = bc["type"];
  if (!type.is_string() ||
      (type != "lru" && type != "keep_all" && type != "dummy" && type != "external"))
    bad(".type\" must be one of \"lru\", \"keep_all\", \"dummy\", \"external\"");
  if (bc.contains("margin") && (!bc["margin"].is_number() || bc["margin"].get<double>() < 0))
    bad(".margin\" must be a number >= 0");
  if (bc.contains("capacity") && !bc["capacity"].is_number_unsigned())
    bad(".capacity\" must be an unsigned integer");
}

// Parses the provider config and creates its backend. Throws yokan::Exception.
// A config without "database" gives a provider with no database (upstream
// allows it: the destination of a restore or a migration); its calls answer
// YOKAN_ERR_INVALID_DATABASE until one is restored or migrated in.
std::shared_ptr<Backend> open_database(json& config, uint16_t provider_id) {
  if (!config.is_object())
    throw Exception(Status::YOKAN_ERR_INVALID_CONFIG, "provider config must be a JSON object");
  if (config.contains("read_only") && !config["read_only"].is_boolean())
    throw Exception(Status::YOKAN_ERR_INVALID_CONFIG,
                    "\"read_only\" must be true or false, not " + config["read_only"].dump());
  if (config.contains("snapshot_dir") &&
      (!config["snapshot_dir"].is_string() || config["snapshot_dir"].get<std::string>().empty()))
    throw Exception(Status::YOKAN_ERR_INVALID_CONFIG,
                    "\"snapshot_dir\" must be a non-empty string (a directory), not " +
                        config["snapshot_dir"].dump());
  if (!config.contains("database")) {
    check_buffer_cache(config);
    return no_database(provider_id);
  }
  json& db = config["database"];
  if (!db.is_object())
    throw Exception(Status::YOKAN_ERR_INVALID_CONFIG, "\"database\" must be an object");
  if (!db.contains("type") || !db["type"].is_string())
    throw Exception(Status::YOKAN_ERR_INVALID_CONFIG,
                    "\"database.type\" must be a string naming a backend");
  if (!db.contains("config")) db["config"] = json::object();
  if (!db["config"].is_object())
    throw Exception(Status::YOKAN_ERR_INVALID_CONFIG, "\"database.config\" must be an object");
  check_buffer_cache(config);
  std::unique_ptr<Backend> backend;
  std::string error;
  std::string type = db["type"].get<std::string>();
  Status s = create_backend(type, db["config"], &backend, &error);
  if (!ok(s)) {
    if (type != "" && error.rfind("unknown backend", 0) == 0) {
      std::string names;
      for (auto& n : available_backends()) names += (names.empty() ? "" : ", ") + n;
      error += " (available: " + names + ")";
    }
    throw Exception(s, error.empty() ? status_message(s) : error);
  }
  db["config"] = backend->config();
  return std::shared_ptr<Backend>(std::move(backend));
}

std::atomic<uint64_t> next_hook_token{1};

// Filter threads yield the CPU to the progress and handler threads (nice
// +10, once per thread): on a node with few cores, a busy filter then delays
// other clients' requests by far less than a scheduler time slice.
void lower_filter_thread_priority() {
  thread_local const bool done = [] {
    setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), 10);
    return true;
  }();
  (void)done;
}

// The mode every key/value and document RPC's meta starts with (0 if absent:
// the handler then rejects the truncated meta itself).
int32_t request_mode(const Request& req) {
  int32_t m = 0;
  if (req.meta().size() >= sizeof m) std::memcpy(&m, req.meta().data(), sizeof m);
  return m;
}

}  // namespace

Provider::Provider(std::shared_ptr<Engine> engine, uint16_t provider_id,
                   const std::string& config_text) {
  if (!engine || engine->finalized())
    throw Exception(Status::YOKAN_ERR_INVALID_MID, "the engine was finalized");
  if (!engine->listening())
    throw Exception(Status::YOKAN_ERR_INVALID_ARGS, "a provider needs an engine in server mode");
  if (config_text.empty())
    throw Exception(Status::YOKAN_ERR_INVALID_ARGS, "the provider config is empty");
  json config;
  try {
    config = json::parse(config_text);
  } catch (const json::exception& e) {
    throw Exception(Status::YOKAN_ERR_INVALID_CONFIG,
                    std::string("provider config is not valid JSON: ") + e.what());
  }
  if (engine->provider_registered(provider_id))
    throw Exception(
        Status::YOKAN_ERR_INVALID_PROVIDER,
        "a provider with id " + std::to_string(provider_id) + " already exists on this engine");
  auto backend = open_database(config, provider_id);
  const bool read_only = config.value("read_only", false);
  const std::string snapshot_dir = config.value("snapshot_dir", std::string());
  impl_ =
      std::make_shared<ProviderImpl>(engine, provider_id, std::move(config), std::move(backend));
  impl_->read_only = read_only;
  impl_->snapshot_dir = snapshot_dir;
  impl_->register_handlers();
  // If the engine goes first, stop serving and close the backend then.
  std::weak_ptr<ProviderImpl> weak = impl_;
  impl_->hook_token = next_hook_token++;
  engine->on_finalize(impl_->hook_token, [weak] {
    if (auto impl = weak.lock()) impl->shutdown();
  });
  // ~Provider cancels the task first. It runs on the progress thread, so it
  // never waits for write_order (a snapshot may hold it for a while).
  engine->on_idle(impl_->hook_token, [impl = impl_.get()] {
    std::shared_lock<std::shared_mutex> g(impl->write_order, std::try_to_lock);
    return g.owns_lock() && impl->backend->use_idle_time();
  });
}

Provider::~Provider() {
  if (!impl_) return;
  impl_->engine->cancel_on_idle(impl_->hook_token);
  impl_->engine->cancel_on_finalize(impl_->hook_token);
  impl_->shutdown();
  // A request that was being handled when the RPCs were deregistered still
  // holds the provider (and so its database) for a moment. Wait for it, so
  // that the database's files and locks are released when this returns: a
  // provider opened on the same path right after must not find it still open.
  // Bounded: a handler ends within its budget, and after the bound the last
  // holder closes the database.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (impl_.use_count() > 1 && std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  impl_.reset();
}

std::string Provider::config() const {
  std::lock_guard<std::mutex> g(impl_->config_mu);
  return impl_->config.dump();
}

void Provider::snapshot(const std::string& dest_path, bool remove_source) {
  std::string error;
  Status s = impl_->snapshot(dest_path, remove_source, &error);
  if (!ok(s)) throw Exception(s, error.empty() ? status_message(s) : error);
}

void Provider::migrate(const std::string& dest_address, uint16_t dest_provider_id,
                       const std::string& new_root, const std::string& extra_config) {
  std::string error;
  Status s = impl_->migrate(dest_address, dest_provider_id, new_root, extra_config, &error);
  if (!ok(s)) throw Exception(s, error.empty() ? status_message(s) : error);
}

void Provider::restore(const std::string& src_path, const std::string& new_root,
                       const std::string& extra_config) {
  std::string error;
  Status s = impl_->restore(src_path, new_root, extra_config, &error);
  if (!ok(s)) throw Exception(s, error.empty() ? status_message(s) : error);
}
uint16_t Provider::provider_id() const { return impl_->id; }

void ProviderImpl::shutdown() {
  if (closing.exchange(true)) return;
  engine->deregister_provider(id);
  if (watcher) watcher->cancel_all(Status::YOKAN_ERR_TIMEOUT);
  // Drains the queued filter requests (they answer INVALID_PROVIDER now);
  // a running filter ends within its time budget.
  if (filter_pool && !filter_pool->runs_here()) filter_pool->stop();
  std::unique_lock<std::shared_mutex> g(write_order);
  if (backend) backend->flush();
}

void ProviderImpl::register_handlers() {
  // In-memory backends answer on the receiving thread unless the request may
  // wait (WAIT); disk-backed ones always go to the handler pool.
  const bool run_inline = !backend->traits().persistent;
  filter_pool = std::make_unique<ThreadPool>(kFilterThreads);
  std::weak_ptr<ProviderImpl> weak = shared_from_this();
  // What a request to an RPC is refused for, decided once here so that serving
  // costs one predictable branch rather than a lookup per request.
  enum class Refuse { kNone, kDocOnly, kReadOnly, kReadOnlyConsume };
  auto refusal = [this](rpc::Id id_) {
    // Document-only backends (array, log) refuse the key/value RPCs.
    if (!backend->traits().key_value && id_ >= rpc::kCount && id_ <= rpc::kEraseRange &&
        id_ != rpc::kIdentify)
      return Refuse::kDocOnly;
    if (!read_only) return Refuse::kNone;
    switch (id_) {
      case rpc::kPut:
      case rpc::kErase:
      case rpc::kEraseRange:
      case rpc::kCollCreate:
      case rpc::kCollDrop:
      case rpc::kDocStore:
      case rpc::kDocUpdate:
      case rpc::kDocErase:
        return Refuse::kReadOnly;
      case rpc::kGet:  // a CONSUME get erases what it reads
        return Refuse::kReadOnlyConsume;
      default:
        return Refuse::kNone;
    }
  };
  auto add = [&](rpc::Id id_, void (ProviderImpl::*fn)(RequestPtr)) {
    const Refuse refused = refusal(id_);
    Handler serve = [weak, fn, refused, pid = id](RequestPtr req) {
      auto impl = weak.lock();
      if (!impl || impl->closing) return req->respond(Status::YOKAN_ERR_INVALID_PROVIDER);
      reset_failure();  // a message recorded by an earlier request is stale
      if (refused != Refuse::kNone) {
        if (refused == Refuse::kDocOnly)
          return req->respond(Status::YOKAN_ERR_OP_UNSUPPORTED,
                              "this backend stores documents only (use collections)");
        if (refused == Refuse::kReadOnly || request_mode(*req) & mode::CONSUME)
          return req->respond(Status::YOKAN_ERR_PERMISSION,
                              "provider " + std::to_string(pid) +
                                  " is read-only: it refuses every write (put, erase, "
                                  "collection and document changes, CONSUME)");
      }
      (impl.get()->*fn)(std::move(req));
    };
    Handler entry = serve;
    if (id_ == rpc::kList || id_ == rpc::kDocList) {
      // These may carry a Lua filter. Such a request never runs on the
      // progress thread, nor on the handler pool: it goes to the filter pool,
      // so slow filters, however many, leave every other request answered.
      // Its time budget counts from arrival (set_request_arrival).
      entry = [serve, run_inline, engine = engine.get(), pool = filter_pool.get()](RequestPtr req) {
        const int32_t m = request_mode(*req);
        auto* raw = req.release();
        if (m & mode::LUA_FILTER) {
          pool->post([serve, raw, arrival = std::chrono::steady_clock::now()] {
            lower_filter_thread_priority();
            set_request_arrival(arrival);
            serve(RequestPtr(raw));
            set_request_arrival({});
          });
        } else if (run_inline && !(m & mode::WAIT)) {
          serve(RequestPtr(raw));
        } else {
          engine->post([serve, raw] { serve(RequestPtr(raw)); });
        }
      };
      handlers[id_] = serve;
      engine->register_handler(id, id_, entry, /*run_inline=*/true);
      return;
    }
    if (run_inline) {
      entry = [serve, engine = engine.get()](RequestPtr req) {
        if (!(request_mode(*req) & mode::WAIT)) return serve(std::move(req));
        auto* raw = req.release();
        engine->post([serve, raw] { serve(RequestPtr(raw)); });
      };
    }
    handlers[id_] = serve;
    engine->register_handler(id, id_, entry, run_inline);
  };
  add(rpc::kCount, &ProviderImpl::handle_count);
  add(rpc::kPut, &ProviderImpl::handle_put);
  add(rpc::kGet, &ProviderImpl::handle_get);
  add(rpc::kExists, &ProviderImpl::handle_exists);
  add(rpc::kLength, &ProviderImpl::handle_length);
  add(rpc::kErase, &ProviderImpl::handle_erase);
  add(rpc::kIdentify, &ProviderImpl::handle_identify);
  add(rpc::kList, &ProviderImpl::handle_list);
  add(rpc::kEraseRange, &ProviderImpl::handle_erase_range);
  add(rpc::kGetRange, &ProviderImpl::handle_get_range);
  // Admin RPCs: never inline (they write files), never refused as writes (a
  // remote snapshot reads the database; see handle_snapshot for its checks).
  auto add_admin = [&](rpc::Id id_, void (ProviderImpl::*fn)(RequestPtr)) {
    engine->register_handler(
        id, id_,
        [weak, fn](RequestPtr req) {
          auto impl = weak.lock();
          if (!impl || impl->closing) return req->respond(Status::YOKAN_ERR_INVALID_PROVIDER);
          reset_failure();
          (impl.get()->*fn)(std::move(req));
        },
        /*run_inline=*/false);
  };
  add_admin(rpc::kSnapshot, &ProviderImpl::handle_snapshot);
  add_admin(rpc::kMigrateBegin, &ProviderImpl::handle_migrate_begin);
  add_admin(rpc::kMigrateChunk, &ProviderImpl::handle_migrate_chunk);
  add_admin(rpc::kMigrateCommit, &ProviderImpl::handle_migrate_commit);
  add_admin(rpc::kMigrateAbort, &ProviderImpl::handle_migrate_abort);
  for (rpc::Id doc_rpc :
       {rpc::kCollCreate, rpc::kCollDrop, rpc::kCollInfo, rpc::kDocStore, rpc::kDocUpdate,
        rpc::kDocLoad, rpc::kDocLength, rpc::kDocErase, rpc::kDocList})
    add(doc_rpc, &ProviderImpl::handle_documents);
  watcher = std::make_unique<Watcher>(
      [e = engine](std::function<void()> job) { e->post(std::move(job)); },
      [weak](RequestPtr req) {
        auto impl = weak.lock();
        if (!impl || impl->closing) return req->respond(Status::YOKAN_ERR_INVALID_PROVIDER);
        auto it = impl->handlers.find(req->rpc());
        if (it != impl->handlers.end()) it->second(std::move(req));
      });
}

Status decode_key_batch(WireReader& meta, std::string_view body, KeyBatch* batch,
                        size_t* consumed) {
  batch->mode = meta.get<int32_t>();
  auto sizes = meta.array<uint64_t>(rpc::kMaxBatch);
  if (!meta.ok()) return Status::YOKAN_ERR_INVALID_ARGS;
  if (batch->mode & ~(kSupportedModes | mode::LUA_FILTER | mode::LIB_FILTER))
    return Status::YOKAN_ERR_MODE;
  batch->keys.resize(sizes.size());
  std::string_view* key = batch->keys.data();
  const size_t used =
      slice_by_sizes(body, sizes, false, [key](size_t i, std::string_view k) { key[i] = k; });
  if (used == SIZE_MAX) return Status::YOKAN_ERR_INVALID_ARGS;
  *consumed = used;
  return Status::YOKAN_SUCCESS;
}

bool ProviderImpl::park_if_missing(RequestPtr& req, const KeyBatch& batch) {
  if (!(batch.mode & mode::WAIT)) return false;
  const std::shared_ptr<Backend> backend = pin();
  for (auto key : batch.keys) {
    bool found = false;
    // A failing database (none, migrated) is answered by the handler, not waited on.
    if (!ok(backend->exists(key, &found))) return false;
    if (found) continue;
    std::string k(key);  // `key` points into the request, which is parked now
    watcher->park(k, std::move(req));
    // A write may have landed between the check and the park: re-check, and
    // if it did, wake ourselves (notify re-runs the parked request).
    if (ok(backend->exists(k, &found)) && found) watcher->notify(k);
    return true;
  }
  return false;
}

void ProviderImpl::notify(const std::vector<std::pair<std::string_view, std::string_view>>& pairs) {
  if (!watcher || watcher->parked() == 0) return;
  for (const auto& p : pairs) watcher->notify(p.first);
}

Status decode_keys_only(const Request& req, KeyBatch* batch) {
  WireReader in(req.meta());
  size_t used = 0;
  Status s = decode_key_batch(in, req.body(), batch, &used);
  if (ok(s) && (!in.done() || used != req.body().size())) s = Status::YOKAN_ERR_INVALID_ARGS;
  return s;
}

}  // namespace yokan
