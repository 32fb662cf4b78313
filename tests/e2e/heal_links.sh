#!/usr/bin/env bash
# Data connections that fail while every node lives: the session never hangs, and a node is
# failed only when it is the one cut off.
#   1. A flood: node 3 holds 200 silent connections to each of the server's control and data
#      ports (each one the server closes is opened again at once) from before nodes 1 and 2
#      join to the end of their session. Both join and store the source; serve says that it
#      cut connections off for room on both ports.
#   2. Node 1 cannot reach the server's data port (a routing rule in its namespace makes it
#      unreachable; its control connection goes on): node 1 fails itself after 5 attempts,
#      saying why;
#      node 2 takes the stream from the server; serve exits 1 naming node 1.
#   3. A chain of 3 fed through a FIFO, so that the stream waits for the test: the server's
#      connection to node 1 is killed (ss -K) once node 3 has the first 16 MiB, node 1's to
#      node 2 once it has 32 MiB. Both times the child reconnects to the same parent and
#      resumes: every node stores the source, serve exits 0 and logs each reconnection.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster_lib.sh"
source "$(dirname "$0")/heal_lib.sh"
require_netns
command -v python3 >/dev/null || skip "needs python3"

data_dir $((512 << 20))
flood=()
cluster_up 3
server=$(node_ip 0)

# The port serve takes its first children's data connections on: the TCP port it listens on
# other than its control port (which it logs).
serve_data_port() {
    local control port
    wait_lines "$run/serve.err" "waiting for [0-9]+ nodes \(control port [0-9]+\)"
    control=$(sed -nE 's/.*waiting for [0-9]+ nodes \(control port ([0-9]+)\)$/\1/p' "$run/serve.err")
    port=$(ip netns exec "${prefix}0" ss -Hltn | awk '{ sub(".*:", "", $4); print $4 }' | grep -vx "$control" | head -n 1)
    [ -n "$port" ] || fail "serve listens on no TCP port besides its control port $control"
    echo "$port"
}

# 1.
heal_source 64M
new_run flood
rm -f "$data"/node*.img
start_serve 120 --session flood --nodes 2 --source "$data/source"
port=$(serve_data_port)
control=$(sed -nE 's/.*waiting for 2 nodes \(control port ([0-9]+)\)$/\1/p' "$run/serve.err")
for p in data control; do
    ip netns exec "${prefix}3" python3 "$KACLONE_SRC/tests/e2e_tools/flood.py" "$server" \
        "$([ $p == data ] && echo "$port" || echo "$control")" 200 >"$run/flood-$p.out" 2>&1 &
    flood[${#flood[@]}]=$!
    on_exit "kill $! 2>/dev/null || true"
    wait_lines "$run/flood-$p.out" "^ready$"
done
for i in 1 2; do start_join "$i" 120 --session flood --server "$server" --sink "$data/node$i.img"; done
heal_check 2 0
kill -TERM "${flood[@]}"
for p in data control; do
    wait_rc "${flood[$([ $p == data ] && echo 0 || echo 1)]}"
    expect_rc "the flood of the $p port" "$rc" 0 "$run/flood-$p.out"
    closed=$(sed -nE 's/^closed ([0-9]+)$/\1/p' "$run/flood-$p.out")
    [ "${closed:-0}" -ge 136 ] || fail "serve closed only ${closed:-0} of the $p port flood's 200 connections (want at least 136: it keeps 64)"
    grep -qE "^kaclone serve: $p port: 64 connections are still to say who they are; cut off [0-9]+ of them, the oldest first$" "$run/serve.err" ||
        fail "serve does not say that it cut connections to its $p port off for room:
$(cat "$run/serve.err")"
done
echo "ok 1: 200 silent connections on each of the server's ports: both nodes joined and stored the source"

# 2.
new_run blocked
rm -f "$data"/node*.img
start_serve 120 --session blocked --nodes 2 --source "$data/source"
port=$(serve_data_port)
ip netns exec "${prefix}1" ip rule add ipproto tcp dport "$port" unreachable
on_exit "ip netns exec '${prefix}1' ip rule del ipproto tcp dport '$port' unreachable 2>/dev/null"
for i in 1 2; do start_join "$i" 120 --session blocked --server "$server" --sink "$data/node$i.img"; done
heal_check 2 1 1
expect_rc "node 1 (join)" "${join_rc[1]}" 1 "$run/join1.err"
expect_eq "node 1's last line" "$(tail -n 1 "$run/join1.err")" \
    "kaclone join: no data connection to the server after 5 attempts (connect to parent $server:$port): Network is unreachable"
grep -qxF "  node 1 ($(node_ip 1)): no data connection to the server after 5 attempts (connect to parent $server:$port): Network is unreachable (at offset 0)" "$run/serve.out" ||
    fail "serve's table does not name node 1's reason:
$(cat "$run/serve.out")"
ip netns exec "${prefix}1" ip rule del ipproto tcp dport "$port" unreachable
echo "ok 2: node 1 could not reach the server's data port: it failed itself, node 2 took its place"

# 3.
# ss -K needs the kernel's socket destroy (CONFIG_INET_DIAG_DESTROY): probed on a connection
# of the test's own, in node 1's namespace.
probe=$(ip netns exec "${prefix}1" python3 -c '
import socket, subprocess
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen()
c = socket.create_connection(l.getsockname()); a, _ = l.accept()
subprocess.run(["ss", "-Hnt", "-K", "dst", "127.0.0.1", "dport", "=", ":%d" % l.getsockname()[1]], capture_output=True)
try:
    c.send(b"x"); print("alive")
except OSError:
    print("destroyed")')
[ "$probe" == destroyed ] || skip "ss -K cannot destroy sockets on this kernel (CONFIG_INET_DIAG_DESTROY), needed for part 3; parts 1 and 2 passed"
new_run relink
rm -f "$data"/node*.img
mkfifo "$work/source.fifo"
exec 7<>"$work/source.fifo"  # opened both ways: neither open waits; serve sees EOF once 7 closes
part=$((16 << 20))  # whole frames (the source sends a frame once it is full); dd counts MiB
# start_serve's way, with stdin the FIFO (a background command's stdin is otherwise /dev/null)
ip netns exec "${prefix}0" timeout -k "$kill_after" 120 "$KACLONE" serve --session relink --nodes 3 --source - \
    <"$work/source.fifo" 7>&- >"$run/serve.out" 2>"$run/serve.err" &
serve_pid=$!
port=$(serve_data_port)
for i in 1 2 3; do start_join "$i" 120 --session relink --server "$server" --sink "$data/node$i.img" 7>&-; done
head -c "$part" "$data/source" >&7
wait_stored 3 "$part"
ip netns exec "${prefix}1" ss -Hnt -K dst "$server" dport = ":$port" >"$run/killed1"
expect_eq "connections killed between the server and node 1" "$(grep -c . "$run/killed1")" 1
dd if="$data/source" bs=1M skip=16 count=16 status=none >&7
wait_stored 3 $((2 * part))
ip netns exec "${prefix}2" ss -Hnt -K dst "$(node_ip 1)" dport = ":$(data_port 1)" >"$run/killed2"
expect_eq "connections killed between node 1 and node 2" "$(grep -c . "$run/killed2")" 1
dd if="$data/source" bs=1M skip=32 status=none >&7
exec 7>&-
heal_check 3 0
for k in 1 2; do
    if [ "$k" -eq 1 ]; then from="the server" to=it; else from="node 1 \\($(node_ip 1)\\)" to="node 1"; fi
    grep -qE "^kaclone serve: the data connection from $from to node $k \($(node_ip "$k")\) broke \(node [12] \(.+\) says: .+\); node $k reconnects to $to and resumes where it is$" "$run/serve.err" ||
        fail "serve does not log that node $k reconnected to $from:
$(cat "$run/serve.err")"
    grep -qE "^kaclone join: the data connection to parent $(node_ip $((k - 1))) broke; resuming from $(node_ip $((k - 1))) at wire byte [0-9]+$" "$run/join$k.err" ||
        fail "node $k does not say that it resumed from the same parent:
$(cat "$run/join$k.err")"
done
echo "ok 3: two data connections killed mid-stream: each child resumed from its parent, no node failed"

echo "PASS: a flood, an unreachable data port and broken data connections: no hang, only the cut-off node failed"
