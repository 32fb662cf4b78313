#!/usr/bin/env bash
# Failures other than a killed node in a chain, 512 MiB each; every survivor byte-identical:
#   1. an inner node of an arity-2 tree of 7 (node 2: the server feeds 1 and 2, node 2 feeds 5
#      and 6) killed at 30%;
#   2. node 3 of a chain of 5 frozen (SIGSTOP) past --stall-timeout 3s: serve fails it for
#      its silence; once continued it learns that it was dropped and exits 1;
#   3. node 2's link set down (its veth) at 30% of a chain of 5: failed for its silence.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster_lib.sh"
source "$(dirname "$0")/heal_lib.sh"
require_netns

data_dir $((5 << 30))
cluster_up 7
heal_source 512M

# 1.
heal_start tree 7 --arity 2
wait_stored 2 $((size * 3 / 10))
kill_node 2
heal_check 7 1 2
for i in 5 6; do
    grep -qE "^kaclone join: parent $(node_ip 2) failed; resuming from $(node_ip 0) at wire byte [0-9]+$" "$run/join$i.err" ||
        fail "node $i (a child of node 2) does not say that it resumed from the server; its stderr:
$(cat "$run/join$i.err")"
done
echo "ok 1: arity-2 tree of 7, inner node 2 killed at 30%: its children resumed from the server"

# 2.
heal_start stall 5 --stall-timeout 3s
wait_stored 3 $((size * 3 / 10))
pid3=$(kaclone_pid "${join_pid[3]}")
[ -n "$pid3" ] || fail "node 3's kaclone is not running"
on_exit "kill -CONT $pid3 2>/dev/null"
kill -STOP "$pid3"
wait_lines "$run/serve.err" "^kaclone serve: node 3 \($(node_ip 3)\) failed: no word from it for 3\.0 s "
kill -CONT "$pid3"
heal_check 5 1 3
expect_eq "node 3's exit code after it continued" "${join_rc[3]}" 1
grep -qE "^kaclone join: the server dropped this node from the session: dropped from session 'stall': no word from it for 3\.0 s" "$run/join3.err" ||
    fail "node 3 does not say that the server dropped it; its stderr:
$(cat "$run/join3.err")"
echo "ok 2: node 3 frozen past --stall-timeout 3s: failed, its child resumed, it exits 1 when continued"

# 3.
heal_start linkdown 5 --stall-timeout 3s
wait_stored 2 $((size * 3 / 10))
ip -n "${prefix}2" link set eth0 down
wait_lines "$run/serve.err" "^kaclone serve: node 2 \($(node_ip 2)\) failed: "
heal_check 5 1 2
ip -n "${prefix}2" link set eth0 up
echo "ok 3: node 2's link down at 30%: failed, the others finished"
echo "PASS: trees, stalls and lost links heal"
