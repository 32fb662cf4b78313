#!/usr/bin/env bash
# The server's stream fails mid-way (its --source - is a TCP connection that is reset): serve
# says why and exits 1, and the node, which would otherwise wait for bytes that never come, is
# told and exits 1 too. Loopback only; no root needed.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || skip "needs python3"

timeout 60 python3 "$KACLONE_SRC/tests/e2e_tools/reset_source.py" "$KACLONE" --session srcfail --nodes 1 \
    >"$work/serve.out" 2>"$work/serve.err" &
serve_pid=$!
on_exit "kill $serve_pid 2>/dev/null"
# the join connects once serve listens, to the control port serve chose and names; at most 10 s
for _ in $(seq 100); do
    grep -q "waiting for 1 nodes" "$work/serve.err" && break
    kill -0 "$serve_pid" 2>/dev/null || break
    sleep 0.1
done
port=$(sed -nE 's/.*waiting for 1 nodes \(control port ([0-9]+)\)$/\1/p' "$work/serve.err")
[ -n "$port" ] || fail "serve did not start listening: $(cat "$work/serve.err")"
run_capture timeout 60 "$KACLONE" join --session srcfail --server "127.0.0.1:$port" --retries 10 --sink "$work/sink"
set +e
wait "$serve_pid"
serve_rc=$?
set -e

expect_eq "serve exit code ($(cat "$work/serve.err"))" "$serve_rc" 1
grep -qxF "kaclone serve: stream failed: read the source: Connection reset by peer" "$work/serve.err" ||
    fail "serve does not say why the stream failed: $(cat "$work/serve.err")"
expect_eq "join exit code (124: it hung) ($err)" "$rc" 1
last=$(tail -n 1 <<<"$err")
want="kaclone join: the server dropped this node from the session: dropped from session 'srcfail': the server's stream failed (at offset "
[[ "$last" == "$want"* ]] || fail "last stderr line of the node:
  got:  $last
  want: $want..."

echo "PASS: a failed source stream ends serve and its nodes"
