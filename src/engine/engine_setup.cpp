// UcxEngine: construction. See src/engine/ucx_engine.hpp.
#include <arpa/inet.h>

#include "engine/net_place.hpp"
#include "engine/ucx_engine.hpp"

namespace yokan {

namespace {

// True if every transport named in a UCX_TLS list is shared memory (or the
// loopback "self"): no peer can reach us over a network.
bool shared_memory_only(const std::string& tls) {
  static const char* const kLocal[] = {"sm",   "shm", "self", "posix",
                                       "sysv", "cma", "knem", "xpmem"};
  size_t at = 0;
  while (at <= tls.size()) {
    size_t end = tls.find(',', at);
    if (end == std::string::npos) end = tls.size();
    std::string name = tls.substr(at, end - at);
    if (!name.empty() && name[0] == '^') return false;  // "all but ...": networks too
    bool local = name.empty();
    for (const char* l : kLocal) local = local || name == l;
    if (!local) return false;
    at = end + 1;
  }
  return true;
}

void set_ucx(ucp_config_t* cfg, const char* name, const std::string& value) {
  ucs_status_t s = ucp_config_modify(cfg, name, value.c_str());
  if (s != UCS_OK)
    throw Exception(
        Status::YOKAN_ERR_INVALID_CONFIG,
        std::string("invalid UCX setting ") + name + "=" + value + ": " + ucs_status_string(s));
}

uint64_t random_token() {
  std::random_device rd;
  uint64_t t = (uint64_t(rd()) << 32) ^ rd() ^ uint64_t(getpid()) ^
               uint64_t(Clock::now().time_since_epoch().count());
  return t ? t : 1;
}

}  // namespace

bool UcxEngine::parse_auth_config() {
  auto limit = [&](const char* key, double def, double max) {
    if (!config_.contains(key)) config_[key] = def;
    const json& v = config_[key];
    if (!v.is_number() || v.get<double>() < 1 || v.get<double>() > max)
      throw Exception(Status::YOKAN_ERR_INVALID_CONFIG, std::string("engine config: \"") + key +
                                                            "\" must be a number from 1 to " +
                                                            std::to_string(long(max)));
    return v.get<double>();
  };
  handshake_.timeout_ms = static_cast<int>(limit("handshake_timeout_ms", 5000, 600000));
  handshake_.max_clients = static_cast<size_t>(limit("max_clients", 1024, 1 << 20));
  handshake_.max_handshakes = static_cast<size_t>(limit("max_handshakes", 1024, 1 << 16));
  if (!config_.contains("auth")) return false;
  json& a = config_["auth"];
  if (!a.is_object())
    throw Exception(Status::YOKAN_ERR_INVALID_CONFIG, "engine config: \"auth\" must be an object");
  for (auto& [k, v] : a.items())
    if (k != "token" && k != "token_file" && k != "allow_anonymous")
      throw Exception(Status::YOKAN_ERR_INVALID_CONFIG,
                      "engine config: unknown key auth." + k +
                          " (expected token, token_file or allow_anonymous)");
  if (a.contains("token") && a.contains("token_file"))
    throw Exception(Status::YOKAN_ERR_INVALID_CONFIG,
                    "engine config: give auth.token or auth.token_file, not both");
  if (a.contains("token")) {
    if (!a["token"].is_string() || a["token"].get<std::string>().empty())
      throw Exception(Status::YOKAN_ERR_INVALID_CONFIG,
                      "engine config: auth.token must be a non-empty string");
    handshake_.secret = a["token"].get<std::string>();
    a["token"] = "<hidden>";  // config() must not show the secret
  } else if (a.contains("token_file")) {
    if (!a["token_file"].is_string())
      throw Exception(Status::YOKAN_ERR_INVALID_CONFIG,
                      "engine config: auth.token_file must be a path");
    handshake_.secret = auth::read_token_file(a["token_file"].get<std::string>());
  }
  if (!a.contains("allow_anonymous")) return false;
  if (!a["allow_anonymous"].is_boolean())
    throw Exception(Status::YOKAN_ERR_INVALID_CONFIG,
                    "engine config: auth.allow_anonymous must be true or false");
  return a["allow_anonymous"].get<bool>();
}

UcxEngine::UcxEngine(const std::string& address, bool listen, const std::string& config_text)
    : listen_(listen), token_(random_token()) {
  try {
    config_ = config_text.empty() ? json::object() : json::parse(config_text);
  } catch (const json::exception& e) {
    throw Exception(Status::YOKAN_ERR_INVALID_CONFIG,
                    std::string("engine config is not valid JSON: ") + e.what());
  }
  if (!config_.is_object())
    throw Exception(Status::YOKAN_ERR_INVALID_CONFIG, "engine config must be a JSON object");
  auto num = [&](const char* key, double def) {
    if (!config_.contains(key)) {
      config_[key] = def;
      return def;
    }
    if (!config_[key].is_number() || config_[key].get<double>() < 0)
      throw Exception(Status::YOKAN_ERR_INVALID_CONFIG,
                      std::string("engine config: \"") + key + "\" must be a non-negative number");
    return config_[key].get<double>();
  };
  double threads_wanted = num("num_rpc_threads", 4);
  // Each is an OS thread: a typo like 1e5 must be refused, not abort the process.
  if (threads_wanted > 1024)
    throw Exception(Status::YOKAN_ERR_INVALID_CONFIG,
                    "engine config: \"num_rpc_threads\" must be at most 1024");
  size_t threads = static_cast<size_t>(threads_wanted);
  liveness_ms_ = num("liveness_timeout_ms", 6000);
  connect_ms_ = num("connect_timeout_ms", 7000);
  if (!(connect_ms_ > 0) || connect_ms_ > 3.6e6) connect_ms_ = 7000;
  size_t rndv = static_cast<size_t>(num("rndv_threshold", 16384));
  spin_us_ = num("spin_us", 100);
  call_spin_us_ = num("call_spin_us", 2000);
  max_message_size_ = static_cast<size_t>(num("max_message_size", double(4ull << 30)));
  if (threads == 0) threads = 1;
  bool allow_anonymous = parse_auth_config();

  // Which UCX transports and which network device, from the address.
  std::string host = "127.0.0.1";
  int port = 0;
  std::string spec = address;
  auto sep = spec.find("://");
  protocol_ = sep == std::string::npos ? spec : spec.substr(0, sep);
  std::string rest = sep == std::string::npos ? "" : spec.substr(sep + 3);
  std::string tls, device;
  bool sm_only = false;
  if (protocol_ == "tcp" || protocol_ == "ofi+tcp" || protocol_ == "ucx+tcp" ||
      protocol_ == "verbs") {
    bool explicit_host = false;
    if (!rest.empty()) {
      auto colon = rest.rfind(':');
      std::string h = colon == std::string::npos ? rest : rest.substr(0, colon);
      if (colon != std::string::npos) {
        try {
          port = std::stoi(rest.substr(colon + 1));
        } catch (...) {
          throw Exception(Status::YOKAN_ERR_INVALID_ARGS, "invalid port in \"" + address + "\"");
        }
        if (port < 0 || port > 65535)
          throw Exception(Status::YOKAN_ERR_INVALID_ARGS, "invalid port in \"" + address + "\"");
      }
      if (!h.empty()) {
        explicit_host = true;
        std::string ip = address_of_interface(h);  // "tcp://IFACE"
        host = ip.empty() ? h : ip;
      }
    }
    if (!listen_ && (!explicit_host || host == "127.0.0.1")) {
      // A client with no address of its own is not pinned: the providers
      // it will look up may sit behind any interface, and each answers on
      // a connection back to an address of the client's that it can route
      // to (README, "Across hosts"). It listens on nothing of its own.
      device.clear();
    } else if (host == "0.0.0.0") {
      device.clear();  // all
    } else {
      device = interface_of(host);
      if (device.empty())
        throw Exception(Status::YOKAN_ERR_INVALID_ARGS,
                        "no local network interface has address " + host);
      // UCX names RDMA devices "mlx5_0:1", not by their network interface.
      // No RDMA device behind it: UCX chooses among all of them.
      if (protocol_ == "verbs") device = rdma_devices_of(device);
    }
    tls = protocol_ == "verbs" ? "rc,ud,sm,self" : "tcp,sm,self";
    // Protected mode (like Redis): beyond loopback, other hosts can reach us,
    // so listening there needs a token unless the operator opts out.
    in_addr ip{};
    bool loopback = inet_pton(AF_INET, host.c_str(), &ip) == 1 && (ntohl(ip.s_addr) >> 24) == 127;
    if (listen_ && !loopback && handshake_.secret.empty() && !allow_anonymous)
      throw Exception(Status::YOKAN_ERR_INVALID_CONFIG,
                      "protected mode: refusing to listen on " + host +
                          " (not loopback) without authentication; give every engine "
                          "{\"auth\": {\"token_file\": PATH}} (or {\"auth\": {\"token\": ...}}), "
                          "or set {\"auth\": {\"allow_anonymous\": true}} to accept anyone who "
                          "can reach this address");
  } else if (protocol_ == "na+sm" || protocol_ == "sm" || protocol_ == "ucx+sm") {
    sm_only = true;
    tls = "sm,self";
    device = "lo";
  } else {
    throw Exception(Status::YOKAN_ERR_INVALID_ARGS,
                    "unsupported protocol \"" + protocol_ + "\" (use tcp, na+sm or verbs)");
  }

  ucp_config_t* ucfg = nullptr;
  if (ucp_config_read(nullptr, nullptr, &ucfg) != UCS_OK)
    throw Exception(Status::YOKAN_ERR_FROM_MERCURY, "cannot read UCX configuration");
  try {
    // Precedence: the engine config's "ucx" (below) > the environment
    // (UCX_TLS, UCX_NET_DEVICES, read by ucp_config_read) > ours.
    if (const char* env = std::getenv("UCX_TLS"))
      tls = env;
    else
      set_ucx(ucfg, "TLS", tls);
    if (const char* env = std::getenv("UCX_NET_DEVICES"))
      device = env;
    else if (!device.empty())
      set_ucx(ucfg, "NET_DEVICES", device);
    set_ucx(ucfg, "RNDV_THRESH", std::to_string(rndv));
    // UCX's newer protocol selection picks zero-copy shared-memory paths for
    // large active messages that the default one (in 1.13) does not: 3-8x the
    // bandwidth for 1-64 MiB values here. But with it, a TCP peer that dies
    // while rendezvous data is queued to it trips a UCX assertion and aborts
    // this process (any client could kill a provider by exiting mid-get:
    // tests/python/test_peer_death.py). So only engines whose transports are
    // all shared memory use it. An explicit "ucx": {"PROTO_ENABLE": ...} or
    // UCX_PROTO_ENABLE wins.
    // (Set after the "ucx" section below, from the transports in the end.)
    // Our worker is shared by the progress thread, handler threads and
    // callers. With UCX's default spinlock, a thread preempted while holding
    // it (a peer woken on the same CPU) leaves the others spinning until the
    // scheduler's next tick: 4-8 ms per call for non-spinning peers on one
    // CPU, and a 64 MiB transfer whose caller spun on the lock for 30% of
    // its time. A mutex puts the waiter to sleep instead.
    if (!std::getenv("UCX_USE_MT_MUTEX")) set_ucx(ucfg, "USE_MT_MUTEX", "y");
    if (config_.contains("ucx")) {
      if (!config_["ucx"].is_object())
        throw Exception(Status::YOKAN_ERR_INVALID_CONFIG,
                        "engine config: \"ucx\" must be an object");
      for (auto& [k, v] : config_["ucx"].items()) {
        if (!v.is_string())
          throw Exception(Status::YOKAN_ERR_INVALID_CONFIG,
                          "engine config: ucx." + k + " must be a string");
        set_ucx(ucfg, k.c_str(), v.get<std::string>());
        if (k == "TLS") tls = v.get<std::string>();
        if (k == "NET_DEVICES") device = v.get<std::string>();
      }
    }
    bool explicit_proto = config_.contains("ucx") && config_["ucx"].contains("PROTO_ENABLE");
    if (!explicit_proto && !std::getenv("UCX_PROTO_ENABLE"))
      set_ucx(ucfg, "PROTO_ENABLE", shared_memory_only(tls) ? "y" : "n");
  } catch (...) {
    ucp_config_release(ucfg);
    throw;
  }
  config_["transports"] = tls;
  config_["net_device"] = device.empty() ? "all" : device;

  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_MT_WORKERS_SHARED;
  params.features = UCP_FEATURE_AM | UCP_FEATURE_WAKEUP;
  params.mt_workers_shared = 1;
  ucs_status_t s = ucp_init(&params, ucfg, &context_);
  ucp_config_release(ucfg);
  if (s != UCS_OK)
    throw Exception(Status::YOKAN_ERR_FROM_MERCURY,
                    std::string("ucp_init failed: ") + ucs_status_string(s));

  ucp_worker_params_t wp{};
  wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE | UCP_WORKER_PARAM_FIELD_FLAGS;
  wp.thread_mode = UCS_THREAD_MODE_MULTI;
  // Calls let go at their deadline (calls.cpp) may leave requests to a dead
  // peer that never complete; reporting them at ucp_worker_destroy reads
  // their closed endpoint's protocol config (UCX 1.13.1 segfaults there).
  wp.flags = UCP_WORKER_FLAG_IGNORE_REQUEST_LEAK;
  s = ucp_worker_create(context_, &wp, &worker_);
  if (s != UCS_OK) {
    ucp_cleanup(context_);
    throw Exception(Status::YOKAN_ERR_FROM_MERCURY,
                    std::string("ucp_worker_create failed: ") + ucs_status_string(s));
  }
  ucp_address_t* addr = nullptr;
  size_t addr_len = 0;
  ucp_worker_get_address(worker_, &addr, &addr_len);
  worker_address_.assign(reinterpret_cast<const char*>(addr), addr_len);
  ucp_worker_release_address(worker_, addr);
  // The same without shared memory, for peers in another network namespace
  // or on another host (see connect_endpoint).
  ucp_worker_attr_t wattr{};
  wattr.field_mask = UCP_WORKER_ATTR_FIELD_ADDRESS | UCP_WORKER_ATTR_FIELD_ADDRESS_FLAGS;
  wattr.address_flags = UCP_WORKER_ADDRESS_FLAG_NET_ONLY;
  if (!sm_only && ucp_worker_query(worker_, &wattr) == UCS_OK) {
    worker_net_address_.assign(reinterpret_cast<const char*>(wattr.address), wattr.address_length);
    ucp_worker_release_address(worker_, wattr.address);
  }
  place_ = network_place();
  own_card_ = encode_card({worker_address_, worker_net_address_, place_});
  ucp_worker_get_efd(worker_, &efd_);

  auto set_handler = [this](uint16_t id, ucp_am_recv_callback_t cb) {
    ucp_am_handler_param_t hp{};
    hp.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
                    UCP_AM_HANDLER_PARAM_FIELD_ARG | UCP_AM_HANDLER_PARAM_FIELD_FLAGS;
    hp.id = id;
    hp.cb = cb;
    hp.arg = this;
    hp.flags = UCP_AM_FLAG_WHOLE_MSG;
    ucp_worker_set_am_recv_handler(worker_, &hp);
  };
  set_handler(kAmHello, &UcxEngine::on_hello);
  set_handler(kAmRequest, &UcxEngine::on_request);
  set_handler(kAmResponse, &UcxEngine::on_response);

  watcher_ = std::make_unique<FdWatcher>();
  if (listen_) {
    ParsedAddress where;
    where.protocol = protocol_;
    where.host = host;
    where.port = port;
    if (sm_only) where.sm_name = "self";
    bootstrap_ = std::make_unique<BootstrapServer>(
        where, own_card_, handshake_,
        [this](uint64_t token, const std::string& card) { return admit_peer(token, card); },
        [this](int fd, uint64_t token) {
          if (fd < 0) return fail_peer(token);
          set_liveness_timers(fd, liveness_ms_);
          std::string who = record_peers_.load() ? peer_of_socket(fd) : std::string();
          note_peer(true, who);
          // The close fails this session's endpoint only: the same client
          // may already have reconnected under the same token.
          std::weak_ptr<Endpoint> session;
          {
            std::lock_guard<std::mutex> g(endpoints_mu_);
            auto it = peers_.find(token);
            if (it != peers_.end()) session = it->second;
          }
          watcher_->add(fd, [this, session, who, sessions = bootstrap_->sessions()] {
            note_peer(false, who);
            if (auto ep = session.lock()) fail_endpoint(ep.get());
            --*sessions;
          });
        });
    address_ = bootstrap_->address();
  } else {
    address_ = protocol_ + "://client";
  }
  try {
    pool_ = std::make_unique<ThreadPool>(threads);
  } catch (const std::system_error& e) {
    throw Exception(Status::YOKAN_ERR_INVALID_CONFIG, std::string("engine config: cannot start ") +
                                                          std::to_string(threads) +
                                                          " rpc threads: " + e.what());
  }
  progress_thread_ = std::thread([this] { progress_loop(); });
}

std::shared_ptr<Engine> Engine::create(const std::string& address, bool listen,
                                       const std::string& config) {
  // The last reference can be dropped on one of the engine's own threads: a
  // handler that held the last reference to a provider, which holds the
  // engine. That thread cannot join itself, nor free the worker it is still
  // inside; a new thread tears the engine down once it has returned.
  return std::shared_ptr<UcxEngine>(new UcxEngine(address, listen, config), [](UcxEngine* e) {
    if (e->runs_here())
      std::thread([e] { delete e; }).detach();
    else
      delete e;
  });
}

}  // namespace yokan
