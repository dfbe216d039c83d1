// Who is on the other end of a connection.
#pragma once

#include <sys/types.h>

namespace ipcx {

// `verified` is true when the kernel supplied the values (SO_PEERCRED at connect time);
// otherwise they are what the peer claimed (signal://) or unknown (-1).
struct PeerCred {
  pid_t pid = -1;
  uid_t uid = static_cast<uid_t>(-1);
  gid_t gid = static_cast<gid_t>(-1);
  bool verified = false;
};

}  // namespace ipcx
