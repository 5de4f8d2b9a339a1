// The wire fuzzer: a real engine and providers in this process, and a hostile
// peer (raw_peer.hpp) that sends mutated HELLOs and requests of every RPC.
//
//   fuzz_wire [--seconds N] [--seed S] [--no-hello] [--no-hello-address] [--out DIR]
//   fuzz_wire --replay FILE...      (re-send saved messages, then check liveness)
//
// The process forks: a child fuzzes, the parent supervises. The child keeps
// its counters and the last messages it sent in shared memory, so when it dies
// (a sanitizer report with halt_on_error, a crash) or stops making progress
// (a hang), the parent still counts them, saves the last messages and the
// report to DIR/crash-K/ (for --replay), and starts a new child for the rest
// of the time. Crashes are told apart by a signature (the sanitizer's SUMMARY
// line, a failed assertion's location, or the signal), and the summary gives
// the unique count. Liveness: a real client on its own engine gets a key every
// 500 ms, and the peer's own well-formed pings must be answered. Exit status 0
// only with no crash, hang or liveness failure.
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/rpc.hpp"
#include "corpus.hpp"
#include "mutator.hpp"
#include "raw_peer.hpp"
#include "yokan/backend.hpp"
#include "yokan/client.hpp"
#include "yokan/provider.hpp"

// Sanitizers stop at the first report; leak checking is off (UCX and the
// storage libraries keep process-lifetime allocations).
extern "C" const char* __asan_default_options() {
  return "halt_on_error=1:abort_on_error=0:detect_leaks=0:allocator_may_return_null=1";
}
extern "C" const char* __ubsan_default_options() { return "halt_on_error=1:print_stacktrace=1"; }

namespace yokan::fuzz {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kRing = 16;                         // last messages kept
constexpr size_t kMaxData = 512 * 1024;              // body bytes per message
constexpr size_t kSlotBytes = 16 * 1024 + kMaxData;  // header + body
constexpr int kExitLiveness = 3, kExitSetup = 4;

struct Slot {
  uint16_t am_id;
  uint32_t send_flags, header_len, data_len;
  char seed[32];
  char bytes[kSlotBytes];
};

// Lives in memory shared with the supervisor.
struct Shared {
  std::atomic<uint64_t> requests, responses, hellos, send_failures, reconnects;
  std::atomic<uint64_t> liveness_checks, liveness_failures, ping_failures;
  std::atomic<uint64_t> heartbeat, ring_next, hello_next;
  Slot ring[kRing];
  // HELLOs apart: one is handled on a pool thread, and by the time it brings
  // the process down, the last kRing messages may all be later ones.
  Slot hello_ring[kRing];
};

struct Options {
  double seconds = 60;
  uint64_t seed = 0;
  bool hello = true;          // mutated HELLOs are sent
  bool hello_address = true;  // ... with their worker address mutated too
  std::string out = "fuzz-out";
  std::vector<std::string> replay;
  std::string data_dir;  // set by the supervisor for each child
};

// ---------------------------------------------------------------------------
// The server side: one engine, the providers, and a client on its own engine.

struct Server {
  std::shared_ptr<Engine> engine, client_engine;
  std::vector<std::unique_ptr<Provider>> providers;
  std::unique_ptr<Database> db;  // the liveness client
  std::filesystem::path dir;
  Providers ids;

  // `data_dir`: where the persistent providers keep their files (made and
  // removed by the supervisor, so that a crashed child leaves nothing).
  explicit Server(const std::string& data_dir) : dir(data_dir) {
    engine = Engine::create("tcp", true);
    auto add = [&](uint16_t id, const std::string& type, bool on_disk, bool read_only) {
      std::string path = (dir / type).string();
      std::string config = "{\"database\": {\"type\": \"" + type + "\", \"config\": {" +
                           (on_disk ? "\"path\": \"" + path + "\"" : "") + "}}" +
                           (read_only ? ", \"read_only\": true" : "") + "}";
      providers.push_back(std::make_unique<Provider>(engine, id, config));
      return id;
    };
    ids.map = add(1, "map", false, false);
    auto have = available_backends();
    for (const char* type : {"lmdb", "rocksdb", "leveldb", "tkrzw", "gdbm", "berkeleydb"}) {
      if (std::find(have.begin(), have.end(), type) == have.end()) continue;
      ids.persistent = add(2, type, true, false);
      std::printf("fuzz: persistent provider: %s\n", type);
      break;
    }
    ids.docs = add(3, "log", true, false);
    ids.read_only = add(4, "map", false, true);
    client_engine = Engine::create("tcp", false);
    db = std::make_unique<Database>(
        Client(client_engine).make_database_handle(engine->self_address(), ids.map));
    db->put(0, {"live"}, {"yes"}, 10000);
  }

  ~Server() {
    db.reset();
    providers.clear();
    if (client_engine) client_engine->finalize();
    if (engine) engine->finalize();
  }

  // A well-formed get through the real client answers (any status but a
  // timeout or a transport failure is an answer: fuzzed erases may remove
  // the key).
  bool alive(std::string* why) {
    try {
      Buffer value;
      db->get_alloc(0, {"live"}, &value, 10000);
      return true;
    } catch (const Exception& e) {
      if (e.code() != Status::YOKAN_ERR_TIMEOUT && e.code() != Status::YOKAN_ERR_FROM_MERCURY)
        return true;
      *why = e.what();
      return false;
    }
  }
};

// ---------------------------------------------------------------------------
// The fuzzing child.

void fill(Slot& s, const std::string& seed, const Wire& w) {
  s.am_id = w.am_id;
  s.send_flags = w.send_flags;
  s.header_len = uint32_t(std::min(w.header.size(), size_t(16 * 1024)));
  s.data_len = uint32_t(std::min(w.data.size(), kMaxData));
  std::snprintf(s.seed, sizeof s.seed, "%s", seed.c_str());
  std::memcpy(s.bytes, w.header.data(), s.header_len);
  std::memcpy(s.bytes + s.header_len, w.data.data(), s.data_len);
}

void record(Shared& sh, const std::string& seed, const Wire& w) {
  if (w.am_id == kAmHello) {
    fill(sh.hello_ring[sh.hello_next.load() % kRing], seed, w);
    sh.hello_next.fetch_add(1);
  }
  fill(sh.ring[sh.ring_next.load() % kRing], seed, w);
  sh.ring_next.fetch_add(1);
}

std::string ping_header(uint64_t token, uint16_t provider, uint64_t seq) {
  WireHeader h{};
  h.magic = kWireMagic;
  h.rpc = rpc::kCount;
  h.provider = provider;
  h.seq = seq;
  h.token = token;
  h.meta_len = 4;
  std::string out(reinterpret_cast<const char*>(&h), sizeof h);
  out.append(4, '\0');  // mode 0
  return out;
}

int run_child(const Options& opt, Shared& sh) {
  std::unique_ptr<Server> server;
  std::unique_ptr<RawPeer> peer;
  try {
    server = std::make_unique<Server>(opt.data_dir);
    peer = std::make_unique<RawPeer>();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz: setup failed: %s\n", e.what());
    return kExitSetup;
  }
  const std::string address = server->engine->self_address();
  std::string error;
  if (!peer->connect(address, &error)) {
    std::fprintf(stderr, "fuzz: cannot connect the raw peer: %s\n", error.c_str());
    return kExitSetup;
  }

  // Liveness through the real client, on its own thread.
  std::atomic<bool> stop{false};
  std::thread liveness([&] {
    while (!stop) {
      std::string why;
      sh.liveness_checks++;
      if (!server->alive(&why)) {
        sh.liveness_failures++;
        std::fprintf(stderr, "fuzz: LIVENESS FAILURE: %s\n", why.c_str());
      }
      for (int i = 0; i < 5 && !stop; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });

  const uint16_t ping_provider = server->ids.persistent ? server->ids.persistent : server->ids.map;
  uint64_t ping_seq = uint64_t(1) << 63;
  auto ping = [&] {
    if (peer->round_trip(kAmRequest, ping_header(peer->token(), ping_provider, ++ping_seq), 10000))
      return true;
    sh.ping_failures++;
    std::fprintf(stderr, "fuzz: PING FAILURE: provider %u did not answer in 10 s\n",
                 unsigned(ping_provider));
    return false;
  };

  if (!opt.replay.empty()) {
    for (const auto& file : opt.replay) {
      std::ifstream in(file, std::ios::binary);
      uint16_t am_id = 0;
      uint32_t flags = 0, hl = 0, dl = 0;
      in.read(reinterpret_cast<char*>(&am_id), 2).read(reinterpret_cast<char*>(&flags), 4);
      in.read(reinterpret_cast<char*>(&hl), 4).read(reinterpret_cast<char*>(&dl), 4);
      std::string header(hl, '\0'), data(dl, '\0');
      in.read(header.data(), hl).read(data.data(), dl);
      if (!in) {
        std::fprintf(stderr, "fuzz: cannot read %s\n", file.c_str());
        continue;
      }
      // Saved requests carry the old peer's token: send them as this peer.
      // A HELLO keeps its own (it introduces a new peer).
      if (am_id != kAmHello && header.size() >= sizeof(WireHeader)) {
        uint64_t token = peer->token();
        std::memcpy(header.data() + offsetof(WireHeader, token), &token, 8);
      }
      std::printf("fuzz: replaying %s (am %u, %zu header + %zu body bytes)\n", file.c_str(),
                  unsigned(am_id), header.size(), data.size());
      sh.requests++;
      if (!peer->send(am_id, header, data, flags, 2000)) sh.send_failures++;
    }
    ping();
  } else {
    MutatorOptions mo;
    mo.hello = opt.hello;
    mo.hello_address = opt.hello_address;
    mo.max_header = std::min<size_t>(peer->max_header(), 16 * 1024);
    mo.max_data = kMaxData;
    Mutator mutator(opt.seed, mo);
    std::vector<Seed> corpus = make_corpus(server->ids, peer->token(), peer->worker_address());
    uint64_t seq = 1;
    const auto deadline = Clock::now() + std::chrono::duration<double>(opt.seconds);
    uint64_t since_connect = 0;
    while (Clock::now() < deadline) {
      sh.heartbeat++;
      const Seed& seed = corpus[mutator.below(corpus.size())];
      // HELLOs are rare: each new token costs the server an endpoint.
      if (seed.am_id == kAmHello && (!opt.hello || !mutator.chance(10))) continue;
      Wire w = mutator.make(seed, corpus, peer->token(), seq++);
      record(sh, seed.name, w);
      sh.requests++;
      if (w.am_id == kAmHello) sh.hellos++;
      if (!peer->send(w.am_id, w.header, w.data, w.send_flags, 2000)) sh.send_failures++;
      peer->progress();
      // Every 64 messages a ping, which also keeps the server's queue short;
      // a reconnection now and then (which drops what this peer left parked).
      if (++since_connect % 64 == 0 && !ping()) break;
      if (since_connect >= 20000) {
        if (!peer->connect(address, &error)) {
          std::fprintf(stderr, "fuzz: reconnection failed: %s\n", error.c_str());
          sh.ping_failures++;
          break;
        }
        corpus = make_corpus(server->ids, peer->token(), peer->worker_address());
        sh.reconnects++;
        since_connect = 0;
      }
      sh.responses = peer->responses();
    }
    ping();
  }
  sh.responses = peer->responses();
  // Which handlers were reached (rpc 0: HELLO answers).
  std::string reached;
  for (size_t i = 0; i < RawPeer::kRpcSlots; ++i)
    if (peer->answered()[i])
      reached += " " + std::to_string(i) + ":" + std::to_string(peer->answered()[i]) + "/" +
                 std::to_string(peer->succeeded()[i]);
  std::printf("fuzz: answers/successes by rpc id:%s\n", reached.c_str());
  stop = true;
  liveness.join();
  std::string why;
  sh.liveness_checks++;
  if (!server->alive(&why)) {
    sh.liveness_failures++;
    std::fprintf(stderr, "fuzz: LIVENESS FAILURE at the end: %s\n", why.c_str());
  }
  peer.reset();
  server.reset();
  return sh.liveness_failures || sh.ping_failures ? kExitLiveness : 0;
}

// ---------------------------------------------------------------------------
// The supervisor.

// What tells one crash from another: the sanitizer's SUMMARY line, else a
// failed assertion (UCX's "file.c:LINE Assertion `...' failed"), else how the
// child ended. Addresses and pids are not part of it.
std::string signature(const std::string& report, int status, bool hang) {
  if (hang) return "hang (no progress, or still running long past the end)";
  const auto summary = report.find("SUMMARY: ");
  if (summary != std::string::npos)
    return report.substr(summary + 9, report.find('\n', summary) - summary - 9);
  const auto assertion = report.find("Assertion `");
  if (assertion != std::string::npos) {
    const auto line_start = report.rfind('\n', assertion);
    std::string line = report.substr(line_start == std::string::npos ? 0 : line_start + 1,
                                     report.find('\n', assertion) - line_start - 1);
    // Keep from the word before "Assertion" (the source location).
    const auto at = line.find("Assertion `");
    const auto word = line.rfind(' ', at >= 2 ? at - 2 : 0);
    // ... up to "failed" (what UCX adds after it has values in it).
    const auto failed = line.find("' failed", at);
    if (failed != std::string::npos) line.resize(failed + 8);
    return line.substr(word == std::string::npos ? 0 : word + 1);
  }
  if (WIFSIGNALED(status)) return "signal " + std::to_string(WTERMSIG(status));
  return "exit status " + std::to_string(WEXITSTATUS(status));
}

void save_crash(const Shared& sh, const std::string& dir, const std::string& report,
                const std::string& sig) {
  std::filesystem::create_directories(dir);
  auto save = [&](const Slot* ring, uint64_t end, const char* stem) {
    const uint64_t begin = end > kRing ? end - kRing : 0;
    for (uint64_t i = begin; i < end; ++i) {
      const Slot& s = ring[i % kRing];
      char name[64];
      std::snprintf(name, sizeof name, "/%s-%02u.msg", stem, unsigned(i - begin));
      std::ofstream out(dir + name, std::ios::binary);
      out.write(reinterpret_cast<const char*>(&s.am_id), 2);
      out.write(reinterpret_cast<const char*>(&s.send_flags), 4);
      out.write(reinterpret_cast<const char*>(&s.header_len), 4);
      out.write(reinterpret_cast<const char*>(&s.data_len), 4);
      out.write(s.bytes, s.header_len + s.data_len);
    }
    if (end) std::printf("fuzz: saved %s/%s-*.msg\n", dir.c_str(), stem);
  };
  save(sh.hello_ring, sh.hello_next.load(), "hello");
  save(sh.ring, sh.ring_next.load(), "msg");
  std::ofstream(dir + "/report.txt") << sig << "\n\n" << report;
}

// Lines of the child's stderr: forwarded to ours, and the last part kept
// (the sanitizer's report is at the end).
struct ChildErr {
  int fd = -1;
  std::string pending, tail;
  bool eof = false;

  void pump(int timeout_ms) {
    if (eof) return;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return;
    char buf[65536];
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) {
      eof = true;
      return;
    }
    (void)!write(STDERR_FILENO, buf, size_t(n));
    tail.append(buf, size_t(n));
    if (tail.size() > (1 << 20)) tail.erase(0, tail.size() - (1 << 19));
  }
};

struct Totals {
  uint64_t runs = 0, crashes = 0, hangs = 0;
  std::map<std::string, int> unique;  // signature -> occurrences
};

// A hang says nothing by itself: every thread's stack (gdb, when installed)
// tells which side stopped, the server's progress thread or the peer.
void dump_stacks(pid_t pid, const std::string& file) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(file).parent_path(), ec);
  const std::string cmd = "timeout 60 gdb -p " + std::to_string(pid) +
                          " -batch -ex 'thread apply all bt' >'" + file + "' 2>&1";
  if (std::system(cmd.c_str()) == 0)
    std::fprintf(stderr, "fuzz: stacks of the hung process in %s\n", file.c_str());
}

// One fuzzing child for `seconds`. Returns its exit code (or -1: crash/hang).
int run_one(Options opt, Shared& sh, Totals& totals) {
  std::string tmpl = (std::filesystem::temp_directory_path() / "yokan-fuzz-data-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) {
    std::perror("mkdtemp");
    return kExitSetup;
  }
  opt.data_dir = tmpl;
  struct RemoveDir {
    std::string path;
    ~RemoveDir() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  } remove_dir{tmpl};
  int pipefd[2];
  if (pipe(pipefd) != 0) {
    std::perror("pipe");
    return kExitSetup;
  }
  sh.ring_next = 0;
  sh.hello_next = 0;
  sh.heartbeat = 0;
  std::fflush(nullptr);
  const auto start = Clock::now();
  pid_t child = fork();
  if (child == 0) {
    close(pipefd[0]);
    dup2(pipefd[1], STDERR_FILENO);
    close(pipefd[1]);
    int code = run_child(opt, sh);
    std::fflush(nullptr);
    _exit(code);
  }
  close(pipefd[1]);
  ChildErr err;
  err.fd = pipefd[0];
  totals.runs++;

  // Hang: no message sent for 60 s, or still running 120 s past the end.
  uint64_t last_beat = 0;
  auto last_change = Clock::now();
  const auto limit = start + std::chrono::duration<double>(opt.seconds + 120);
  int status = 0;
  bool hang = false;
  for (;;) {
    pid_t r = waitpid(child, &status, WNOHANG);
    if (r == child) break;
    err.pump(100);
    if (err.eof) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    uint64_t beat = sh.heartbeat.load();
    if (beat != last_beat) {
      last_beat = beat;
      last_change = Clock::now();
    }
    if (!hang && (Clock::now() - last_change > std::chrono::seconds(60) || Clock::now() > limit)) {
      std::fprintf(stderr, "fuzz: HANG: no progress; killing the fuzzing process\n");
      hang = true;
      dump_stacks(child, opt.out + "/hang-stacks-" + std::to_string(child) + ".txt");
      kill(child, SIGKILL);
    }
  }
  // The rest of its output (a sanitizer report may still be in the pipe).
  const auto drain_until = Clock::now() + std::chrono::seconds(2);
  while (!err.eof && Clock::now() < drain_until) err.pump(100);
  close(err.fd);

  const bool exited = WIFEXITED(status);
  const int code = exited ? WEXITSTATUS(status) : -1;
  if (exited && code == kExitSetup && !hang) return kExitSetup;
  const bool crash = !hang && !(exited && (code == 0 || code == kExitLiveness));
  if (!crash && !hang) return code;
  const std::string sig = signature(err.tail, status, hang);
  (hang ? totals.hangs : totals.crashes)++;
  const int seen = totals.unique[sig]++;
  std::fprintf(stderr, "fuzz: %s: %s%s\n", hang ? "HANG" : "CRASH", sig.c_str(),
               seen ? " (seen before)" : " (new)");
  if (!seen)
    save_crash(sh, opt.out + "/crash-" + std::to_string(totals.unique.size()), err.tail, sig);
  return -1;
}

int supervise(Options opt) {
  void* mem =
      mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    std::perror("mmap");
    return kExitSetup;
  }
  auto* sh = new (mem) Shared();
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration<double>(opt.seconds);
  Totals totals;
  int code = 0;
  // After a crash, a new child (new seed) fuzzes for the time left; a child
  // that crashes at once every time stops the run after kMaxRuns.
  constexpr uint64_t kMaxRuns = 200;
  const uint64_t first_seed = opt.seed;
  for (;;) {
    code = run_one(opt, *sh, totals);
    if (code == kExitSetup) {
      std::fprintf(stderr, "fuzz: the fuzzing process could not start\n");
      return kExitSetup;
    }
    const double left = std::chrono::duration<double>(end - Clock::now()).count();
    if (code != -1 || !opt.replay.empty() || left < 1 || totals.runs >= kMaxRuns) break;
    opt.seconds = left;
    opt.seed = first_seed + totals.runs;
    std::printf("fuzz: restarting with seed %llu for %.0f s\n", (unsigned long long)opt.seed, left);
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  rusage usage{};
  getrusage(RUSAGE_CHILDREN, &usage);
  const uint64_t requests = sh->requests.load();
  std::printf(
      "fuzz: seed %llu, %.1f s, requests %llu (%.0f/s), responses %llu, hellos %llu, "
      "reconnects %llu, send failures %llu, fuzzing processes %llu, max RSS %ld MiB\n",
      (unsigned long long)first_seed, elapsed, (unsigned long long)requests,
      requests / std::max(elapsed, 1e-9), (unsigned long long)sh->responses.load(),
      (unsigned long long)sh->hellos.load(), (unsigned long long)sh->reconnects.load(),
      (unsigned long long)sh->send_failures.load(), (unsigned long long)totals.runs,
      usage.ru_maxrss / 1024);
  for (const auto& [sig, n] : totals.unique) std::printf("fuzz: %dx %s\n", n, sig.c_str());
  std::printf(
      "fuzz: crashes %llu, unique crashes %zu, hangs %llu, liveness checks %llu, liveness "
      "failures %llu, ping failures %llu\n",
      (unsigned long long)totals.crashes, totals.unique.size() - (totals.hangs ? 1 : 0),
      (unsigned long long)totals.hangs, (unsigned long long)sh->liveness_checks.load(),
      (unsigned long long)sh->liveness_failures.load(),
      (unsigned long long)sh->ping_failures.load());
  std::fflush(stdout);
  return totals.crashes || totals.hangs || code != 0 ? 1 : 0;
}

int usage() {
  std::fprintf(stderr,
               "usage: fuzz_wire [--seconds N] [--seed S] [--no-hello] [--no-hello-address]\n"
               "                 [--out DIR]\n"
               "       fuzz_wire --replay FILE...\n");
  return 2;
}

}  // namespace
}  // namespace yokan::fuzz

int main(int argc, char** argv) {
  using namespace yokan::fuzz;
  Options opt;
  opt.seed = std::random_device{}();
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    if (a == "--seconds" && i + 1 < argc) {
      opt.seconds = std::atof(next());
    } else if (a == "--seed" && i + 1 < argc) {
      opt.seed = std::strtoull(next(), nullptr, 10);
    } else if (a == "--no-hello") {
      opt.hello = false;
    } else if (a == "--no-hello-address") {
      opt.hello_address = false;
    } else if (a == "--out" && i + 1 < argc) {
      opt.out = next();
    } else if (a == "--replay") {
      while (i + 1 < argc) opt.replay.push_back(argv[++i]);
      if (opt.replay.empty()) return usage();
    } else {
      return usage();
    }
  }
  std::printf("fuzz: seed %llu, %.0f s, HELLO mutation %s\n", (unsigned long long)opt.seed,
              opt.seconds,
              !opt.hello          ? "off"
              : opt.hello_address ? "on"
                                  : "on (worker address intact)");
  return supervise(opt);
}
