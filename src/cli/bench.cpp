#include "cli/bench.hpp"

#include <cstdio>

namespace ipcx::cli {

int run_bench(const BenchArgs&) {
  std::fprintf(stderr, "ipcx bench: not built yet\n");
  return 1;
}

}  // namespace ipcx::cli
