// Shared by the reactor tests.
#pragma once

#include <cstdlib>

#include <gtest/gtest.h>

#include <ipcx/reactor.hpp>

#include "unit/support.hpp"

namespace ipcx::test {

inline Reactor make_reactor() {
  auto r = Reactor::create();
  if (!r) {
    ADD_FAILURE() << why(r);
    std::abort();
  }
  return std::move(*r);
}

// Runs the reactor until `done()` holds (each round bounded; the watchdog bounds the total).
template <class Pred>
void run_until(Reactor& r, Pred done) {
  while (!done()) {
    auto n = r.run_once(std::chrono::seconds(10));
    ASSERT_TRUE(n) << why(n);
  }
}

}  // namespace ipcx::test
