#!/usr/bin/env bash
# Hostile input does not disturb a session. While serve waits for 3 nodes, node 5 sends
#   an HTTP request and a hello of protocol version 9 to the control port, leaves a connection
#   to it open without a byte, sends garbage to UDP port 7117, and garbage to node 1's data
#   port (read when node 1 accepts its child);
# nodes 1 and 2 join while the silent connection is pending, node 3 only once serve has
# refused it (5 s deadline). Each hostile peer gets exactly one log line naming it, the
# version-9 peer gets the refusal in words, and the 3 nodes store the source byte for byte.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster_lib.sh"
require_netns
command -v socat >/dev/null || skip "needs socat (scripts/setup installs it)"

data_dir $((64 << 20))
cluster_up 5
random_file "$data/source" 8M
source_sha=$(sha "$data/source")
server=$(node_ip 0)
hostile=$(node_ip 5)

in_hostile() { ip netns exec "${prefix}5" "$@"; }

new_run hostile
start_serve 90 --session hostile --nodes 3 --source "$data/source"
wait_lines "$run/serve.err" "waiting for 3 nodes \(control port [0-9]+\)"
port=$(sed -nE 's/.*waiting for 3 nodes \(control port ([0-9]+)\)$/\1/p' "$run/serve.err")

printf 'GET / HTTP/1.0\r\n\r\n' | in_hostile timeout 10 socat -t 2 - "TCP:$server:$port" >/dev/null 2>&1 || true
printf 'KCC1\x09\x00\x01\x00\x00\x00\x00\x00' | in_hostile timeout 10 socat -t 2 - "TCP:$server:$port" >"$run/v9.out" 2>&1 || true
printf 'not a question' | in_hostile timeout 10 socat -u - "UDP-SENDTO:$server:7117" 2>/dev/null || true
in_hostile timeout 60 bash -c "sleep 50 | socat - TCP:$server:$port" >/dev/null 2>&1 &
silent=$!
on_exit "kill $silent 2>/dev/null || true"
wait_lines "$run/serve.err" "ignored a discovery datagram from $hostile:"

for i in 1 2; do start_join "$i" 60 --session hostile --server "$server" --sink "$data/h$i"; done
wait_lines "$run/serve.err" "joined, 2 of 3"
node1_port=$(data_port 1)
printf 'garbage garbage garbage garbage garbage\n' | in_hostile timeout 10 socat -t 1 - "TCP:$(node_ip 1):$node1_port" >/dev/null 2>&1 || true
wait_lines "$run/serve.err" "refused $hostile:[0-9]+: timed out$"
start_join 3 60 --session hostile --server "$server" --sink "$data/h3"
wait_session 3
kill "$silent" 2>/dev/null || true

expect_rc serve "$serve_rc" 0 "$run/serve.err"
for i in 1 2 3; do
    expect_rc "node $i (join)" "${join_rc[i]}" 0 "$run/join$i.err"
    expect_eq "sha256 of node $i's sink" "$(sha "$data/h$i")" "$source_sha"
done

# One line per hostile peer, naming it, and nothing else refused or ignored.
got=$(grep -E "refused|ignored" "$run/serve.err" | sed -E "s/$hostile:[0-9]+/HOSTILE/" | sort)
want=$(sort <<EOT
kaclone serve: ignored a discovery datagram from HOSTILE: not a kaclone peer (bad magic)
kaclone serve: refused HOSTILE: not a kaclone peer (bad magic)
kaclone serve: refused HOSTILE: protocol version mismatch
kaclone serve: refused HOSTILE: timed out
EOT
)
expect_eq "serve's log lines about hostile peers" "$got" "$want"
grep -qa "protocol version mismatch" "$run/v9.out" || fail "the version-9 peer did not get the refusal in words: $(od -c "$run/v9.out" | head)"
got=$(grep -E "refused" "$run/join1.err" | sed -E "s/$hostile:[0-9]+/HOSTILE/")
expect_eq "node 1's log line about the garbage on its data port" "$got" \
    "kaclone join: refused data connection from HOSTILE: not a kaclone peer (bad magic)"
# Nodes 1 and 2 joined while the silent connection was still pending.
joined2=$(grep -n "joined, 2 of 3" "$run/serve.err" | cut -d: -f1)
timed_out=$(grep -n "timed out" "$run/serve.err" | cut -d: -f1)
[ "$joined2" -lt "$timed_out" ] || fail "the nodes joined only after the silent connection was refused:
$(cat "$run/serve.err")"

echo "PASS: garbage, a wrong version, a silent connection and UDP junk are refused without disturbing the session"
