// Facts about the machine a run measured, for reading its figures later.
#pragma once

#include <string>
#include <string_view>

namespace ipcx::bench {

struct Machine {
  std::string cpu_model;
  int cpus = 0;  // CPUs the run was allowed on
  std::string kernel;
  int pinned[2] = {-1, -1};  // parent, echo child
  // The two pinned CPUs are hyper-threads of one core: they share caches and execution units,
  // which makes round trips much cheaper than between cores.
  bool smt_siblings = false;
};

Machine machine_facts(int cpus, int parent_cpu, int child_cpu);

// Whether a sysfs CPU list ("0-3,8,10-11") names `cpu`.
bool cpu_list_contains(std::string_view list, int cpu);

}  // namespace ipcx::bench
