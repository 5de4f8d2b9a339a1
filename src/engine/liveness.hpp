// Liveness timers for the bootstrap connection that both ends keep open to
// a peer. Its close tells us that the peer's process or engine is gone; on a
// dead link no FIN ever comes, so TCP keepalive with short timers (and
// TCP_USER_TIMEOUT) turns silence into an error within about `timeout_ms`,
// instead of the kernel's two-hour default.
#pragma once

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>

namespace yokan {

// Best effort: on a unix socket (na+sm) the TCP options do not apply and
// fail harmlessly; a peer death there always closes the socket.
inline void set_liveness_timers(int fd, double timeout_ms) {
  if (fd < 0 || !(timeout_ms > 0)) return;
  int on = 1;
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  // Idle a third of the budget, then four probes over the rest.
  int idle = std::max(1, static_cast<int>(timeout_ms / 3000));
  int intvl = std::max(1, static_cast<int>(timeout_ms / 6000));
  int cnt = 4;
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
  unsigned user_timeout = static_cast<unsigned>(std::min(timeout_ms, 3.6e6));
  setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof user_timeout);
}

}  // namespace yokan
