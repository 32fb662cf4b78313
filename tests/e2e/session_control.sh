#!/usr/bin/env bash
# Operator control of a session, on a 5-node netns cluster, with `--json` events:
#   1. --min 3 --wait 2s with 3 of 5 nodes: starts at the deadline with 3; a node that joins
#      after the start is told the session is running and exits 1; the 3 store the source.
#   2. `kaclone go` starts a server that waits for 4 nodes with the 2 that joined; go for a
#      session the server does not run is refused with the reason.
#   3. --stagger 500ms with 4 nodes: the released events are >= 500 ms apart; --stagger 8s with
#      3 nodes: the last, released 16 s after the first, still exits 0.
#   4. Two sessions served from the same host at once, found by name (unicast and broadcast
#      discovery), each with its own 2 nodes: all 4 store their session's source; a second
#      server of a session that this host already serves is refused.
#   5. --order FILE puts the named nodes first: the assigned parents follow the file.
#   6. SIGINT to serve while it waits: the joined node is told why, writes nothing; while it
#      streams (from a FIFO the test feeds): the node is dropped with that reason, serve prints
#      its table with the node failed; during a --stagger: the rest are released at once.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster_lib.sh"
require_netns

n=5
data_dir $((64 << 20))
cluster_up "$n"
random_file "$data/source" 8M
random_file "$data/other" 3M
source_sha=$(sha "$data/source")
other_sha=$(sha "$data/other")



# ---- 1. --min/--wait, and a late node
new_run minwait
mkfifo "$data/fifo"
start_serve 60 --session mw --nodes 5 --min 3 --wait 2s --json --source "$data/fifo"
exec 3>"$data/fifo"  # serve opened its source; the stream flows only when we write
on_exit "exec 3>&-"
# (the nodes must not hold the fifo open: only our fd 3 writes to it)
for i in 1 2 3; do start_join "$i" 60 --session mw --server "$(node_ip 0)" --sink "$data/mw$i" 3>&-; done
wait_lines "$run/serve.out" "\"event\":\"started\"" 1
started=$(grep '"event":"started"' "$run/serve.out")
expect_eq "nodes the session started with" "$(json_field "$started" count)" 3
expect_eq "why it started" "$(json_field "$started" message)" "the --wait deadline passed with 3 of 5 nodes (--min 3)"
start_join 4 30 --session mw --server "$(node_ip 0)" --sink "$data/mw4" 3>&-
wait_rc "${join_pid[4]}"
expect_rc "late node 4 (join)" "$rc" 1 "$run/join4.err"
expect_eq "late node 4's message" "$(tail -n 1 "$run/join4.err")" \
    "kaclone join: session 'mw' is already running with 3 nodes; a node cannot join a running session: refused by the server"
cat "$data/source" >&3
exec 3>&-
for i in 1 2 3; do wait_rc "${join_pid[i]}"; expect_rc "node $i (join)" "$rc" 0 "$run/join$i.err"; done
wait_rc "$serve_pid"
expect_rc serve "$rc" 0 "$run/serve.err"
for i in 1 2 3; do expect_eq "sha256 of node $i's sink" "$(sha "$data/mw$i")" "$source_sha"; done
summary=$(grep '"event":"summary"' "$run/serve.out")
expect_eq "summary: nodes" "$(json_field "$summary" nodes)" 3
expect_eq "summary: ok" "$(json_field "$summary" ok)" 3
expect_eq "summary: failed" "$(json_field "$summary" failed)" "[]"
grep -q '"event":"refused".*"message":"session '"'"'mw'"'"' is already running' "$run/serve.out" ||
    fail "serve's JSON has no refused event for the late node:
$(cat "$run/serve.out")"

# ---- 2. kaclone go
new_run go
start_serve 60 --session go1 --nodes 4 --json --source "$data/source"
for i in 1 2; do start_join "$i" 60 --session go1 --server "$(node_ip 0)" --sink "$data/go$i"; done
wait_lines "$run/serve.out" "\"event\":\"joined\"" 2
run_capture ip netns exec "${prefix}5" "$KACLONE" go --session nosuch --server "$(node_ip 0)" --retries 1
expect_eq "go for a session nobody serves: exit code" "$rc" 1
expect_eq "go for a session nobody serves: message" "$err" \
    "kaclone go: no server for session 'nosuch' answered after 1 attempt (asked 10.99.0.10): no server answered"
port=$(sed -nE "s/.*session 'go1' waiting for 4 nodes \(control port ([0-9]+)\)$/\1/p" "$run/serve.err")
run_capture ip netns exec "${prefix}5" "$KACLONE" go --session nosuch --server "$(node_ip 0):$port"
expect_eq "go for another session at go1's port: exit code" "$rc" 1
expect_eq "go for another session at go1's port: message" "$err" \
    "kaclone go: this server runs session 'go1', not 'nosuch': refused by the server"
run_capture ip netns exec "${prefix}5" "$KACLONE" go --session go1 --server "$(node_ip 0)"
expect_eq "go: exit code" "$rc" 0
expect_eq "go: message" "$err" "kaclone go: session 'go1' starts with 2 nodes"
wait_session 2
expect_rc serve "$serve_rc" 0 "$run/serve.err"
for i in 1 2; do
    expect_rc "node $i (join)" "${join_rc[i]}" 0 "$run/join$i.err"
    expect_eq "sha256 of node $i's sink" "$(sha "$data/go$i")" "$source_sha"
done
started=$(grep '"event":"started"' "$run/serve.out")
expect_eq "nodes the session started with" "$(json_field "$started" count)" 2
[[ "$(json_field "$started" message)" == "kaclone go from 10.99.0.15:"* ]] ||
    fail "why go1 started: got '$(json_field "$started" message)', want 'kaclone go from 10.99.0.15:PORT'"

# ---- 3. --stagger
new_run stagger
start_serve 60 --session st --nodes 4 --stagger 500ms --json --source "$data/source"
for i in 1 2 3 4; do start_join "$i" 60 --session st --server "$(node_ip 0)" --sink "$data/st$i"; done
wait_session 4
expect_rc serve "$serve_rc" 0 "$run/serve.err"
mapfile -t released < <(grep '"event":"released"' "$run/serve.out")
expect_eq "released events" "${#released[@]}" 4
for ((k = 1; k < 4; k++)); do
    a=$(json_field "${released[k - 1]}" t)
    b=$(json_field "${released[k]}" t)
    gap=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%d", (b - a) * 1000 + 0.5 }')
    [ "$gap" -ge 500 ] || fail "releases $k and $((k + 1)) are $gap ms apart, want >= 500:
$(printf '%s\n' "${released[@]}")"
done

# A stagger longer than a node's 15 s patience with a silent server: the last node is released
# 16 s after the first, and still exits 0 (the server keeps saying it is there).
new_run stagger-long
start_serve 60 --session stl --nodes 3 --stagger 8s --source "$data/source"
for i in 1 2 3; do start_join "$i" 60 --session stl --server "$(node_ip 0)" --sink "$data/stl$i"; done
wait_session 3
expect_rc serve "$serve_rc" 0 "$run/serve.err"
for i in 1 2 3; do expect_rc "node $i, released after $(((i - 1) * 8)) s" "${join_rc[i]}" 0 "$run/join$i.err"; done

# ---- 4. two sessions on one host, found by name
new_run two
ip netns exec "${prefix}0" timeout -k 5 60 "$KACLONE" serve --session alpha --nodes 2 --source "$data/source" \
    >"$run/alpha.out" 2>"$run/alpha.err" &
alpha=$!
ip netns exec "${prefix}0" timeout -k 5 60 "$KACLONE" serve --session beta --nodes 2 --source "$data/other" \
    >"$run/beta.out" 2>"$run/beta.err" &
beta=$!
wait_lines "$run/alpha.err" "waiting for 2 nodes"
wait_lines "$run/beta.err" "waiting for 2 nodes"
run_capture ip netns exec "${prefix}0" "$KACLONE" serve --session alpha --nodes 2 --source "$data/source"
expect_eq "a second server of session alpha: exit code" "$rc" 1
expect_eq "a second server of session alpha: message" "$err" \
    "kaclone serve: session 'alpha' is already being served on this host: Address already in use"
# alpha's nodes ask the host directly (unicast: the kernel gives the datagram to one of the
# two servers), beta's by broadcast.
for i in 1 2; do start_join "$i" 60 --session alpha --server "$(node_ip 0)" --sink "$data/alpha$i"; done
for i in 3 4; do start_join "$i" 60 --session beta --sink "$data/beta$i"; done
for i in 1 2 3 4; do wait_rc "${join_pid[i]}"; expect_rc "node $i (join)" "$rc" 0 "$run/join$i.err"; done
wait_rc "$alpha"; expect_rc "serve alpha" "$rc" 0 "$run/alpha.err"
wait_rc "$beta"; expect_rc "serve beta" "$rc" 0 "$run/beta.err"
for i in 1 2; do expect_eq "sha256 of node $i's sink (alpha)" "$(sha "$data/alpha$i")" "$source_sha"; done
for i in 3 4; do expect_eq "sha256 of node $i's sink (beta)" "$(sha "$data/beta$i")" "$other_sha"; done

# ---- 5. --order
new_run order
printf '# the chain, head first\n%s\n\n%s   # a comment\n' "$(node_ip 4)" "$(node_ip 2)" >"$run/order"
start_serve 60 --session ord --nodes 4 --order "$run/order" --json --source "$data/source"
for i in 1 2 3 4; do start_join "$i" 60 --session ord --server "$(node_ip 0)" --sink "$data/ord$i"; done
wait_session 4
expect_rc serve "$serve_rc" 0 "$run/serve.err"
chain=$(grep '"event":"assigned"' "$run/serve.out" | while read -r line; do
    echo "$(json_field "$line" parent)>$(json_field "$line" address)"
done | paste -sd' ')
expect_eq "parent>node of every node in the chain" "$chain" \
    "10.99.0.10>10.99.0.14 10.99.0.14>10.99.0.12 10.99.0.12>10.99.0.11 10.99.0.11>10.99.0.13"
for i in 1 2 3 4; do expect_eq "sha256 of node $i's sink" "$(sha "$data/ord$i")" "$source_sha"; done

# ---- 6. SIGINT to serve: while it waits, and while it streams
new_run sigint
start_serve 60 --session sig --nodes 2 --source "$data/source"
start_join 1 60 --session sig --server "$(node_ip 0)" --sink "$data/sig1"
wait_lines "$run/serve.err" "joined, 1 of 2"
kill -INT "$(kaclone_pid "$serve_pid")"
wait_session 1
expect_rc "serve (SIGINT while waiting)" "$serve_rc" 1 "$run/serve.err"
expect_eq "serve's last lines (SIGINT while waiting)" "$(tail -n 2 "$run/serve.err")" "kaclone serve: SIGINT: stopping (a second signal kills at once)
kaclone serve: SIGINT: stopped by a signal"
expect_rc "node 1 (its server stopped while waiting)" "${join_rc[1]}" 1 "$run/join1.err"
expect_eq "node 1's last line" "$(tail -n 1 "$run/join1.err")" \
    "kaclone join: serve was stopped (SIGINT) before the session started: refused by the server"
[ ! -e "$data/sig1" ] || fail "node 1 left a sink file although its session never started"

new_run sigint-stream
mkfifo "$data/sig.fifo"
exec 7<>"$data/sig.fifo"
ip netns exec "${prefix}0" timeout -k "$kill_after" 60 "$KACLONE" serve --session sigs --nodes 1 --source - \
    <"$data/sig.fifo" 7>&- >"$run/serve.out" 2>"$run/serve.err" &
serve_pid=$!
start_join 1 60 --session sigs --server "$(node_ip 0)" --sink "$data/sigs1" 7>&-
head -c 4M "$data/source" >&7
for ((t = 0; t < 400; t++)); do
    [ "$(stat -c %s "$data/sigs1" 2>/dev/null || echo 0)" -ge $((4 << 20)) ] && break
    sleep 0.05
done
[ "$(stat -c %s "$data/sigs1" 2>/dev/null || echo 0)" -ge $((4 << 20)) ] ||
    fail "node 1 did not store the first 4 MiB within 20 s: $(tail -n 3 "$run/join1.err")"
kill -INT "$(kaclone_pid "$serve_pid")"
wait_session 1
exec 7>&-
expect_rc "serve (SIGINT while streaming)" "$serve_rc" 1 "$run/serve.err"
expect_rc "node 1 (its server stopped while streaming)" "${join_rc[1]}" 1 "$run/join1.err"
# The offset is the last one node 1 reported (once a second): 0 or 4 MiB.
[[ "$(tail -n 1 "$run/join1.err")" =~ ^"kaclone join: the server dropped this node from the session: dropped from session 'sigs': serve was interrupted (SIGINT: stopped by a signal) (at offset "(0|4194304)"): refused by the server"$ ]] ||
    fail "node 1's last line: $(tail -n 1 "$run/join1.err")"
check_table 1 "" - failed
[[ "$failed_lines" =~ ^"failed:"$'\n'"  node 1 ($(node_ip 1)): serve was interrupted (SIGINT: stopped by a signal) (at offset "(0|4194304)")"$ ]] ||
    fail "serve's failed: lines: $failed_lines"

# SIGINT during a --stagger of 100 s: the node still waiting is released at once, and both
# exit 0 (their clones are done) well before the 60 s timeout.
new_run sigint-stagger
start_serve 60 --session sigst --nodes 2 --stagger 100s --json --source "$data/source"
for i in 1 2; do start_join "$i" 60 --session sigst --server "$(node_ip 0)" --sink "$data/sigst$i"; done
wait_lines "$run/serve.out" '"event":"released"'
kill -INT "$(kaclone_pid "$serve_pid")"
wait_session 2
expect_rc "serve (SIGINT during --stagger)" "$serve_rc" 0 "$run/serve.err"
for i in 1 2; do
    expect_rc "node $i (SIGINT to serve during --stagger)" "${join_rc[i]}" 0 "$run/join$i.err"
    expect_eq "sha256 of node $i's sink" "$(sha "$data/sigst$i")" "$source_sha"
done
expect_eq "released events" "$(grep -c '"event":"released"' "$run/serve.out")" 2

echo "PASS: session control (--min/--wait, late node, go, --stagger, two sessions, --order, SIGINT)"
