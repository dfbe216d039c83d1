#!/usr/bin/env bash
# The CLI at work (`make walkthrough`): two processes talking over each transport, shell
# interop, signals, pub/sub, request/reply, a mailbox, shared memory, clean shutdown. Uses only
# the built CLI (build/bin/ipcx). `make demo` runs `ipcx tour` (scripts/demo.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
ipcx=$PWD/build/bin/ipcx
dir=$(mktemp -d /tmp/ipcx-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for p in "${pids[@]}"; do "$ipcx" shm rm "robust-counter-$p" >/dev/null 2>&1 || true; done
  rm -rf "$dir"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
wait_ready() { # wait until the listener's stderr says it is listening
  for _ in $(seq 1 200); do grep -qE "listening on|replying on" "$1" 2>/dev/null && return 0; sleep 0.02; done
  echo "listener did not start: $(cat "$1")" >&2; return 1
}

# One echo server per transport, a client process sends and pings it.
sysv_key=$(printf '0x7e6%05x' $(($$ & 0xfffff)))
for url in "unix://$dir/app.sock" "unix:@ipcx-demo-$$" "unix+seq://$dir/seq.sock" "tcp://127.0.0.1:0" "fifo://$dir/fifo" \
           "mq:///ipcx-demo-$$?msgsize=1024" "sysv://$sysv_key" "shm://ipcx-demo-$$"; do
  scheme=${url%%:*}
  say "$scheme: ipcx listen $url --echo  +  ipcx send / ipcx ping"
  : >"$dir/err"  # emptied here: the listener's own redirection happens after the fork, maybe late
  "$ipcx" listen "$url" --echo >"$dir/out" 2>"$dir/err" &
  server=$!
  pids+=("$server")
  wait_ready "$dir/err"
  real=$(sed -n 's/.*listening on //p' "$dir/err" | head -1)   # tcp: the port the kernel chose
  "$ipcx" send "$real" "hello over $scheme"
  "$ipcx" ping "$real" --count 2000
  kill -TERM "$server"; wait "$server" || true
  echo "server printed: $(head -1 "$dir/out")"
done
ls "$dir" | grep -q sock && echo "(socket files left?)" || echo "listeners removed their socket and FIFO files on SIGTERM"

say "pipe: ipcx send pipe: ... | ipcx recv pipe:"
"$ipcx" send pipe: "framed message through a shell pipe" | "$ipcx" recv pipe:

say "shell interop: echo > FIFO, read with ipcx recv --lines"
"$ipcx" recv "fifo://$dir/shell" --lines --count 2 --timeout 5000 2>/dev/null &
recv=$!
pids+=("$recv")
for _ in $(seq 1 200); do [[ -p $dir/shell ]] && break; sleep 0.02; done
echo "written by echo" > "$dir/shell"
echo "and by another echo" > "$dir/shell"
wait "$recv"

say "shell interop: a frame written by printf | socat, decoded by ipcx recv"
"$ipcx" recv "unix://$dir/socat.sock" --count 1 --timeout 5000 2>"$dir/err2" &
recv=$!
pids+=("$recv")
wait_ready "$dir/err2"
printf 'IX\001\001\000\000\000\000\005\000\000\000\000\000\000\000hello' | socat - "UNIX-CONNECT:$dir/socat.sock"
wait "$recv"

say "signal://: ipcx signal PID --value 42 (sigqueue + signalfd)"
"$ipcx" recv signal://self --count 1 --timeout 5000 2>"$dir/err3" &
recv=$!
pids+=("$recv")
wait_ready "$dir/err3"
"$ipcx" signal "$recv" --value 42
wait "$recv"

say "pub/sub: two subscriber processes, one takes every topic, one only gbp."
"$ipcx" sub "unix://$dir/quotes.sock" "" --count 2 >"$dir/all" 2>/dev/null &
sub_all=$!
"$ipcx" sub "unix://$dir/quotes.sock" gbp. >"$dir/gbp" 2>/dev/null &
sub_gbp=$!
pids+=("$sub_all" "$sub_gbp")
printf '1.09\n1.10\n' | "$ipcx" pub "unix://$dir/quotes.sock" eur.usd - --wait-subscribers 2
wait "$sub_all" "$sub_gbp"
echo "every topic:"; sed 's/^/  /' "$dir/all"
echo "prefix gbp.: $(wc -l <"$dir/gbp") publications (its filter matched none)"

say "request/reply: ipcx rep --exec 'tr a-z A-Z'  +  ipcx req"
"$ipcx" rep "unix://$dir/up.sock" --exec 'tr a-z A-Z' 2>"$dir/err4" &
rep=$!
pids+=("$rep")
wait_ready "$dir/err4"
"$ipcx" req "unix://$dir/up.sock" "shout this"
"$ipcx" stat "unix://$dir/up.sock" | grep -E '^(sent|delivered) '
kill -TERM "$rep"; wait "$rep" || true

say "mailbox: the sender exits before the receiver starts (a POSIX queue)"
"$ipcx" mq create "demo-$$" --capacity 10 --msgsize 256
for i in 1 2 3; do "$ipcx" mq send "demo-$$" "letter $i"; done
"$ipcx" mq stat "demo-$$" | head -3
"$ipcx" mq recv "demo-$$" --count 3
"$ipcx" mq rm "demo-$$"

say "shared memory: 4 processes update a robust Monitor<T>; SIGKILL lands mid-update"
build/bin/robust_counter 40 &
counter=$!
pids+=("$counter")
sleep 0.3
echo "while it runs, ipcx shm ls:"
"$ipcx" shm ls | grep -E '^NAME|robust-counter' || true
wait "$counter"

say "zero-copy pub/sub, a shared queue, shared state and an event in shared memory (no daemon, nothing left behind)"
"$ipcx" sub "shm://demo-frames-$$" --count 3 &
sub=$!
pids+=("$sub")
printf 'frame 1\nframe 2\nframe 3\n' | "$ipcx" pub "shm://demo-frames-$$" --wait-subscribers 1
wait "$sub"
# Two writers before any reader: the queue keeps their lines until the reader takes them.
printf 'job 1\njob 2\n' | "$ipcx" shm push "demo-jobs-$$"
"$ipcx" shm push "demo-jobs-$$" 'job 3'
"$ipcx" shm pop "demo-jobs-$$" --count 3 --timeout 5000 2>/dev/null | sed 's/^/queue: /'
"$ipcx" state write "demo-mode-$$" docking &
writer=$!
pids+=("$writer")
sleep 0.2
printf 'state: '; "$ipcx" state read "demo-mode-$$"
"$ipcx" event listen "demo-event-$$" --count 1 &
listener=$!
pids+=("$listener")
sleep 0.2
"$ipcx" shm ls | grep -E "^NAME|demo-(mode|event)-$$" || true
"$ipcx" event notify "demo-event-$$" 7
wait "$listener"
kill -TERM "$writer"; wait "$writer" || true
"$ipcx" shm ls | grep -c "demo-.*-$$" | sed 's/^/objects left: /' || true

say "done: every transport carried messages between two processes; patterns and a mailbox; shared memory survived SIGKILL"
