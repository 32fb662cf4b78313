#!/usr/bin/env bash
# Sessions with --key on a netns cluster:
#   1. a key file readable by others is refused before anything starts;
#   2. a node with the wrong key and a node without a key are refused (and logged by address)
#      and exit 1, while the 3 nodes with the key store the source byte for byte;
#   3. a node with a key refuses a server that runs without one, which never counts it: a
#      session of one node waits for a node without a key, which takes the place;
#   4. a forged data connection to a relay (from the assigned child's own address, without the
#      key) is refused and logged by the relay, and the session still completes;
#   5. bytes altered on the wire together with their checksum (serve's test hook
#      KACLONE_FAULT_FORGE_BYTE) are caught by the frame tag: node 1 names the frame.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster_lib.sh"
require_netns

n=5
data_dir $((64 << 20))
cluster_up "$n"
random_file "$data/source" 16M
source_sha=$(sha "$data/source")
head -c 32 /dev/urandom >"$work/key"
head -c 32 /dev/urandom >"$work/wrong"
chmod 600 "$work/key" "$work/wrong"
cp "$work/key" "$work/loose" && chmod 644 "$work/loose"


# ---- 1. a loose key file
run_capture "$KACLONE" serve --session a --nodes 1 --key "$work/loose" --source "$data/source"
expect_eq "serve with a key file of mode 644: exit code" "$rc" 1
expect_eq "serve with a key file of mode 644: message" "$err" \
    "kaclone serve: --key $work/loose is accessible by group or others (mode 0644); run: chmod 600 $work/loose: Permission denied"

# ---- 2. wrong key, no key, and three good nodes
new_run keyed
start_serve 60 --session keyed --nodes 3 --key "$work/key" --source "$data/source"
wait_lines "$run/serve.err" "waiting for 3 nodes"
start_join 4 30 --session keyed --server "$(node_ip 0)" --key "$work/wrong" --sink "$data/k4"
wait_rc "${join_pid[4]}"
expect_rc "node 4 (wrong key)" "$rc" 1 "$run/join4.err"
expect_eq "node 4's message" "$(tail -n 1 "$run/join4.err")" \
    "kaclone join: wrong key: no valid proof for the key of session 'keyed': authentication failed"
start_join 5 30 --session keyed --server "$(node_ip 0)" --sink "$data/k5"
wait_rc "${join_pid[5]}"
expect_rc "node 5 (no key)" "$rc" 1 "$run/join5.err"
expect_eq "node 5's message" "$(tail -n 1 "$run/join5.err")" \
    "kaclone join: session 'keyed' needs a key: run with --key FILE: refused by the server"
grep -qE "^kaclone serve: refused $(node_ip 4):[0-9]+: wrong key \(authentication failed\)$" "$run/serve.err" ||
    fail "serve did not log node 4's wrong key by address:
$(cat "$run/serve.err")"
for i in 1 2 3; do start_join "$i" 60 --session keyed --server "$(node_ip 0)" --key "$work/key" --sink "$data/k$i"; done
wait_session 3
expect_rc serve "$serve_rc" 0 "$run/serve.err"
for i in 1 2 3; do
    expect_rc "node $i (join)" "${join_rc[i]}" 0 "$run/join$i.err"
    expect_eq "sha256 of node $i's sink" "$(sha "$data/k$i")" "$source_sha"
done
check_table 3 $((16 << 20)) "" ok
if grep -q "runs without a key" "$run/serve.err"; then fail "serve with --key says it runs without a key"; fi

# ---- 3. a node with a key and a server without one
new_run open
start_serve 60 --session open --nodes 1 --source "$data/source"
start_join 1 30 --session open --server "$(node_ip 0)" --key "$work/key" --sink "$data/o1"
wait_rc "${join_pid[1]}"
expect_rc "node 1 (key, open server)" "$rc" 1 "$run/join1.err"
[[ "$(tail -n 1 "$run/join1.err")" =~ ^"kaclone join: server 10.99.0.10:"[0-9]+" runs session 'open' without a key, but this side has --key: not trusting it: authentication failed"$ ]] ||
    fail "node 1's message: got '$(tail -n 1 "$run/join1.err")'"
grep -qxF "kaclone serve: session 'open' runs without a key: any host on this network can join it, start it or read its stream (use --key FILE)" \
    "$run/serve.err" || fail "serve without --key does not say that the session runs open:
$(cat "$run/serve.err")"
# It refused before it counted: had it counted, the session of one would have started with it.
wait_lines "$run/serve.err" "^kaclone serve: $(node_ip 1 | sed 's/\./\\./g'):[0-9]+ did not join: it has --key and this side runs session 'open' without one: not trusting it$"
if grep -q "joined" "$run/serve.err"; then fail "serve counted the node that refused it:
$(cat "$run/serve.err")"; fi
start_join 2 30 --session open --server "$(node_ip 0)" --sink "$data/o2"
wait_rc "${join_pid[2]}"
expect_rc "node 2 (no key, open server)" "$rc" 0 "$run/join2.err"
expect_eq "sha256 of node 2's sink" "$(sha "$data/o2")" "$source_sha"
wait_rc "$serve_pid"
expect_rc "serve (open, node 1 refused it)" "$rc" 0 "$run/serve.err"
expect_eq "serve's table" "$(awk 'NR > 1 && NR <= 2 {print $2, $7}' "$run/serve.out")" "$(node_ip 2) ok"

# ---- 4. a forged data connection to a relay
# Node 2 (node 1's child) is frozen before the start, so node 1 waits for its child while a
# connection from node 2's own address, claiming to be node 2 but without the key, arrives.
new_run forged
start_serve 60 --session forged --nodes 3 --key "$work/key" --json --source "$data/source" --stall-timeout 60s
for i in 1 2; do start_join "$i" 60 --session forged --server "$(node_ip 0)" --key "$work/key" --sink "$data/f$i"; done
wait_lines "$run/serve.out" '"event":"joined"' 2
node2=$(kaclone_pid "${join_pid[2]}")
[ -n "$node2" ] || fail "node 2's kaclone is not running"
kill -STOP "$node2"
on_exit "kill -CONT $node2 2>/dev/null || true"
start_join 3 60 --session forged --server "$(node_ip 0)" --key "$work/key" --sink "$data/f3"
port=$(data_port 1)
# data_hello {session "forged", node 2, resume 0, acked 0, not complete}, then a proof of zeros
# (this binary's protocol version, message types 7, 12).
proto=$("$KACLONE" version | awk '$1 == "protocol" {print $2}')
[[ "$proto" =~ ^[0-9]+$ ]] && [ "$proto" -lt 256 ] || fail "kaclone version names no protocol version: '$proto'"
v=$(printf '\\x%02x' "$proto")
hello_body='\x06\x00forged\x02\x00\x00\x00'$(printf '\\x00%.0s' $(seq 17))
proof_body=$(printf '\\x00%.0s' $(seq 48))
printf "KCC1$v\\x00\\x07\\x00\\x1d\\x00\\x00\\x00$hello_body""KCC1$v"'\x00\x0c\x00\x30\x00\x00\x00'"$proof_body" |
    ip netns exec "${prefix}2" timeout 10 socat -t 5 - "TCP:$(node_ip 1):$port" >"$run/forged.out" 2>"$run/forged.err" || true
wait_lines "$run/join1.err" "refused data connection from $(node_ip 2):"
grep -qE "^kaclone join: refused data connection from $(node_ip 2):[0-9]+: wrong key \(authentication failed\)$" "$run/join1.err" ||
    fail "node 1's log line for the forged connection:
$(cat "$run/join1.err")"
kill -CONT "$node2"
wait_session 3
expect_rc serve "$serve_rc" 0 "$run/serve.err"
for i in 1 2 3; do
    expect_rc "node $i (join)" "${join_rc[i]}" 0 "$run/join$i.err"
    expect_eq "sha256 of node $i's sink" "$(sha "$data/f$i")" "$source_sha"
done

# ---- 5. a forged payload byte with a matching checksum
new_run tag
KACLONE_FAULT_FORGE_BYTE=5000000 start_serve 60 --session tag --nodes 2 --key "$work/key" --source "$data/source"
for i in 1 2; do start_join "$i" 60 --session tag --server "$(node_ip 0)" --key "$work/key" --sink "$data/t$i"; done
wait_session 2
expect_rc "serve of a forged stream" "$serve_rc" 1 "$run/serve.err"
expect_rc "node 1 (join) of a forged stream" "${join_rc[1]}" 1 "$run/join1.err"
expect_eq "node 1's error" "$(tail -n 1 "$run/join1.err")" \
    "kaclone join: stream 0 at offset 4194304: frame tag does not verify (bytes altered or injected)"

echo "PASS: sessions with --key (loose key file, wrong key, no key, open server, forged data connection, forged bytes)"
