#!/usr/bin/env bash
# Fails if any test left an object behind: test names all start with "ipcx-test"; the bench
# harness (run by a test) works under /tmp/ipcx-bench-PID.
set -u
left=$(ls -d /tmp/ipcx-test* /tmp/ipcx-bench-* /dev/shm/ipcx-*-ipcx-test* /dev/shm/ipcx-test* /dev/mqueue/ipcx-test* /dev/mqueue/ipcx-*-ipcx-test* 2>/dev/null)
if [[ -n $left ]]; then
  echo "tests left these behind:"
  echo "$left"
  exit 1
fi
echo "nothing left behind in /tmp, /dev/shm, /dev/mqueue"
