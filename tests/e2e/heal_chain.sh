#!/usr/bin/env bash
# Node failures in a chain: every survivor ends byte-identical, the dead are reported failed.
#   1. 8 nodes, 1 GiB: node 3 killed (kill -9) at about 30%. While the session still runs (node
#      8 is held stopped meanwhile, with a stall timeout long enough), node 3 restarted is told
#      it cannot join a running session and why. serve exits 1; node 4 says where it resumed.
#   2. 6 nodes, 512 MiB, --allow-failures 2: nodes 2 and 5 (not adjacent) killed at different
#      points; serve exits 0.
#   3. the same with nodes 4 and 5 (adjacent), 5 killed after 4.
#   4. the last node killed at 50%; 5. the first node (the server's child) killed at 30%.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster_lib.sh"
source "$(dirname "$0")/heal_lib.sh"
require_netns

data_dir $((10 << 30))
cluster_up 8

# 1.
heal_source 1G
heal_start chain8 8 --stall-timeout 60s
wait_stored 3 $((size * 3 / 10))
kill_node 3
pid8=$(kaclone_pid "${join_pid[8]}")
[ -n "$pid8" ] || fail "node 8's kaclone is not running at 30% of node 3"
on_exit "kill -CONT $pid8 2>/dev/null"
kill -STOP "$pid8"
wait_lines "$run/serve.err" "^kaclone serve: node 3 \($(node_ip 3)\) failed: "
run_capture ip netns exec "${prefix}3" timeout 30 "$KACLONE" join --session chain8 --server "$(node_ip 0)" --sink /dev/null
kill -CONT "$pid8"
expect_eq "restarted node 3's exit code" "$rc" 1
grep -qE "session 'chain8' is already running with 8 nodes; a node cannot join a running session \(node 3 at $(node_ip 3) failed in it: .+\)" <<<"$err" ||
    fail "restarted node 3 was not told why it cannot join; its stderr:
$err"
heal_check 8 1 3
grep -qE "^kaclone join: parent $(node_ip 3) failed; resuming from $(node_ip 2) at wire byte [0-9]+$" "$run/join4.err" ||
    fail "node 4 does not say that it resumed from node 2; its stderr:
$(cat "$run/join4.err")"
echo "ok 1: chain of 8, node 3 killed at 30%: 7 survivors identical, restarted node 3 refused"

# 2.-5. on 6 nodes with 512 MiB
heal_source 512M
heal_start apart 6 --allow-failures 2
wait_stored 2 $((size / 5))
kill_node 2
wait_stored 5 $((size / 2))
kill_node 5
heal_check 6 0 2 5
echo "ok 2: nodes 2 and 5 killed at 20% and 50%, --allow-failures 2: serve exits 0"

heal_start adjacent 6
wait_stored 4 $((size / 4))
kill_node 4
wait_stored 5 $((size * 2 / 5))
kill_node 5
heal_check 6 1 4 5
echo "ok 3: adjacent nodes 4 and 5 killed at 25% and 40%"

heal_start last 6
wait_stored 6 $((size / 2))
kill_node 6
heal_check 6 1 6
echo "ok 4: the last node killed at 50%"

heal_start first 6
wait_stored 1 $((size * 3 / 10))
kill_node 1
heal_check 6 1 1
echo "ok 5: the first node killed at 30%"
echo "PASS: chains heal around killed nodes"
