#!/usr/bin/env bash
# A slow node and a stuck one, in chains whose links are shaped to 800 Mbit/s:
#   1. --drop-slow: once node 2 has stored 30% of 512 MiB its link drops to 40 Mbit/s (1/20 of
#      the others); serve drops it as too slow after --slow-timeout 3s, node 3 resumes from node
#      1, and the others end with the source's sha256 while node 2 is far from the end;
#   2. --drop-slow with a slow disk instead: node 2's sink (a command) takes 5 MB/s after
#      200 MiB: dropped as too slow, the others end with the source's sha256;
#   Both are 1/20 of the link rate: the pace serve measures on two shared cores is far below
#   it (29-52 MB/s for part 1, 49 for part 2, measured in scripts/test runs; less next to
#   other tests), and the rule wants a node 4x slower than that pace. At 30% the session has
#   run long enough (2.5 s at least) for serve to know its pace.
#   3. the slow link without --drop-slow (256 MiB, --buffer 32M everywhere): everyone
#      slows down, all 4 end byte-identical, no node's peak RSS reaches its buffer + 32 MiB;
#   4. node 3's data connection blackholed at 20% (a blackhole route to its parent) while its
#      control connection to the server lives on: failed as stuck after --stall-timeout 3s, node 4 resumes
#      from node 2, the others end byte-identical.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster_lib.sh"
source "$(dirname "$0")/heal_lib.sh"
require_netns

rss_limit=64 # MiB: --buffer 32M + 32 MiB
[ "${KACLONE_SANITIZED:-OFF}" = ON ] && rss_limit=128  # see relay_sigstop.sh
data_dir $((3 << 30))
cluster_up 4 --rate 800mbit
heal_source 512M

# netns-cluster shape I RATE: node I's link alone
shape_node() { "$cluster" shape "$1" --rate "$2" --prefix "$prefix" >/dev/null || fail "could not shape node $1's link to $2"; }

# 1.
heal_start dropslow 4 --drop-slow --slow-timeout 3s
wait_stored 2 $((size * 3 / 10))
shape_node 2 40mbit
on_exit "'$cluster' shape 2 --rate 800mbit --prefix '$prefix' >/dev/null 2>&1"
wait_lines "$run/serve.err" "^kaclone serve: node 2 \($(node_ip 2)\) failed: too slow: held the session back for [0-9.]+ s, storing [0-9.]+ MB/s where the others kept up to [0-9.]+ MB/s \(--drop-slow\) \(at offset [0-9]+\); node 3 now resumes from node 1 \($(node_ip 1)\)$"
heal_check 4 1 2
reached=$(sed -nE 's/^  node 2 \(.*\(at offset ([0-9]+)\)$/\1/p' "$run/serve.out")
[ "$reached" -lt $((size * 9 / 10)) ] ||
    fail "node 2 reached offset $reached of $size before the others finished: they were held to its pace"
grep -qE "^kaclone join: the server dropped this node from the session: dropped from session 'dropslow': too slow: " "$run/join2.err" ||
    fail "node 2 does not say that the server dropped it as too slow; its stderr:
$(cat "$run/join2.err")"
echo "ok 1: --drop-slow: node 2 at 1/20 of the link rate dropped at offset $reached of $size; $(grep -oE 'held the session back for .* \(--drop-slow\)' "$run/serve.out" | head -n 1)"
shape_node 2 800mbit

# 2. A slow disk instead of a slow link: node 2's sink takes 5 MB/s after 200 MiB.
new_run slowdisk
rm -f "$data"/node*.img
start_serve 180 --session slowdisk --nodes 4 --source "$data/source" --drop-slow --slow-timeout 3s
slow_sink="python3 -c 'import sys, time
i, n = sys.stdin.buffer, 0
while b := i.read(65536):
    n += len(b)
    if n > 200 << 20: time.sleep(0.013)
'"
for ((i = 1; i <= 4; i++)); do
    if [ "$i" -eq 2 ]; then
        start_join 2 180 --session slowdisk --server "$(node_ip 0)" --exec "$slow_sink"
    else
        start_join "$i" 180 --session slowdisk --server "$(node_ip 0)" --sink "$data/node$i.img"
    fi
done
wait_lines "$run/serve.err" "^kaclone serve: node 2 \($(node_ip 2)\) failed: too slow: held the session back for [0-9.]+ s, storing [0-9.]+ MB/s where the others kept up to [0-9.]+ MB/s \(--drop-slow\) \(at offset [0-9]+\); node 3 now resumes from node 1 \($(node_ip 1)\)$"
heal_check 4 1 2
echo "ok 2: --drop-slow: node 2's disk at 5 MB/s after 200 MiB: dropped; $(grep -oE 'held the session back for .* \(--drop-slow\)' "$run/serve.out" | head -n 1)"

# 3.
random_file "$data/source" 256M
source_sha=$(sha "$data/source")
size=$(stat -c %s "$data/source")
new_run backpressure
rm -f "$data"/node*.img
start_serve 180 --session backpressure --nodes 4 --source "$data/source" --buffer 32M
for ((i = 1; i <= 4; i++)); do
    start_join "$i" 180 --session backpressure --server "$(node_ip 0)" --sink "$data/node$i.img" --buffer 32M
done
wait_stored 2 $((size / 10))
shape_node 2 80mbit
heal_check 4 0
for ((i = 1; i <= 4; i++)); do
    check_stored "$i" "$size"
    awk -v r="${peak_rss[i]}" -v l="$rss_limit" 'BEGIN { exit !(r < l) }' ||
        fail "node $i's peak RSS is ${peak_rss[i]} MiB, not below $rss_limit MiB (--buffer 32M)"
done
! grep -q "failed" "$run/serve.err" || fail "serve failed a node without --drop-slow:
$(cat "$run/serve.err")"
echo "ok 3: without --drop-slow the slow node slows everyone, all 4 byte-identical, peak RSS ${peak_rss[*]} MiB"
shape_node 2 800mbit

# 4.
heal_start stuck 4 --stall-timeout 3s
wait_stored 3 $((size / 5))
# Node 3 sends nothing to node 2 any more (its acknowledgements): node 2 soon stops sending.
ip -n "${prefix}3" route add blackhole "$(node_ip 2)/32"
on_exit "ip -n '${prefix}3' route del blackhole '$(node_ip 2)/32' 2>/dev/null"
wait_lines "$run/serve.err" "^kaclone serve: node 3 \($(node_ip 3)\) failed: took in no data for [0-9.]+ s although node 2 \($(node_ip 2)\) has bytes for it \(its data connection or data plane is stuck; --stall-timeout\) \(at offset [0-9]+\); node 4 now resumes from node 2 \($(node_ip 2)\)$"
heal_check 4 1 3
ip -n "${prefix}3" route del blackhole "$(node_ip 2)/32"
echo "ok 4: node 3's data connection blackholed: failed as stuck while it still reported, node 4 resumed from node 2"
echo "PASS: a slow node (link or disk) is dropped with --drop-slow and slows everyone without; a stuck one is failed"
