// Helpers shared by the System V queue tests.
#pragma once

#include <string>

#include <sys/msg.h>

#include <ipcx/sysv.hpp>

namespace ipcx::sysvtest {

// Removes the queue at `key` when the test ends, whatever happened.
struct QueueGuard {
  std::string key;
  ~QueueGuard() { (void)sysv::Queue::remove(key); }
};

inline bool queue_exists(const std::string& key) {
  auto k = sysv::parse_key(key);
  return k && ::msgget(k->value, 0) != -1;
}

}  // namespace ipcx::sysvtest
