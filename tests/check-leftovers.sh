#!/usr/bin/env bash
# Fails if any test left an object behind: test names all start with "ipcx-test"; the bench
# harness (run by a test) works under /tmp/ipcx-bench-PID.
set -u
left=$(ls -d /tmp/ipcx-test* /tmp/ipcx-bench-* /dev/shm/ipcx-*-ipcx-test* /dev/shm/ipcx-test* /dev/mqueue/ipcx-test* /dev/mqueue/ipcx-*-ipcx-test* 2>/dev/null)
# System V queues: tests and the bench use keys 0x7e500000..0x7e5fffff (docs/sysv.md).
queues=$(awk 'NR > 1 && $1 >= 2119172096 && $1 <= 2120220671 { printf "sysv queue key 0x%08x (id %s)\n", $1, $2 }' /proc/sysvipc/msg 2>/dev/null)
left=$(printf '%s\n%s' "$left" "$queues" | sed '/^$/d')
if [[ -n $left ]]; then
  echo "tests left these behind:"
  echo "$left"
  exit 1
fi
echo "nothing left behind in /tmp, /dev/shm, /dev/mqueue, System V queues"
