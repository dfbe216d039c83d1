#!/usr/bin/env bash
# `make demo`: `ipcx tour` — every mechanism ipcx has, between two processes on this machine,
# its messages checked and its costs measured: the table on stdout, the chart in
# build/ipcx-tour.svg. `make walkthrough` (scripts/walkthrough.sh) shows the CLI at work.
set -euo pipefail
cd "$(dirname "$0")/.."
exec build/bin/ipcx tour --svg build/ipcx-tour.svg "$@"
