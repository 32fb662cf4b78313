#!/usr/bin/env bash
# Zerocopy mode when the kernel refuses SEND_ZC in the middle of the stream: every node goes on
# with plain sends from the same ring, nothing is lost or sent twice. The test hook
# KACLONE_FAULT_REFUSE_ZEROCOPY_AT=BYTE makes every SEND_ZC from that wire byte on carry flags
# no kernel knows, so the kernel itself refuses it (EINVAL), as one without SEND_ZC would: the
# server from 32 MiB on, node 1 from 96 MiB on. Every sink is the source (sha256), serve and
# node 1 each say once where they fell back, node 2 (still on SEND_ZC) and node 3 (no child)
# do not.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster_lib.sh"
require_netns

size=$((256 << 20))
n=3
data_dir $((5 * size))
cluster_up "$n"
random_file "$data/source" 256M
source_sha=$(sha "$data/source")

new_run zerocopy
KACLONE_FAULT_REFUSE_ZEROCOPY_AT=$((32 << 20)) start_serve 90 --session zc --nodes "$n" --source "$data/source" --relay-mode zerocopy
KACLONE_FAULT_REFUSE_ZEROCOPY_AT=$((96 << 20)) start_join 1 90 --session zc --server "$(node_ip 0)" --sink "$data/node1.img"
for ((i = 2; i <= n; i++)); do
    start_join "$i" 90 --session zc --server "$(node_ip 0)" --sink "$data/node$i.img"
done
wait_session "$n"

expect_session_ok "$n"
check_table "$n" "$size" match ok
for ((i = 1; i <= n; i++)); do
    check_stored "$i" "$size"
    expect_eq "sha256 of node $i's sink" "$(sha "$data/node$i.img")" "$source_sha"
done

# expect_fallback WHO LOG CHILD FROM: exactly one fallback line in LOG, for CHILD, at a wire
# byte at or after FROM (the first send that starts there or later) and inside the stream.
expect_fallback() {
    local who=$1 log=$2 child=$3 from=$4 lines
    local re="^kaclone $who: the kernel refused SEND_ZC to child node $child at wire byte ([0-9]+) \\(Invalid argument\\): plain sends from there$"
    lines=$(grep -c "refused SEND_ZC" "$log" || true)
    expect_eq "$who: lines about refused SEND_ZC" "$lines" 1
    [[ "$(grep "refused SEND_ZC" "$log")" =~ $re ]] || fail "$who's fallback line is not the expected one:
  got:  $(grep "refused SEND_ZC" "$log")
  want: kaclone $who: the kernel refused SEND_ZC to child node $child at wire byte N (Invalid argument): plain sends from there"
    local at=${BASH_REMATCH[1]}
    [ "$at" -ge "$from" ] && [ "$at" -lt "$size" ] || fail "$who fell back at wire byte $at, not in [$from, $size)"
}
expect_fallback serve "$run/serve.err" 1 $((32 << 20))
expect_fallback join "$run/join1.err" 2 $((96 << 20))
for i in 2 3; do
    expect_eq "node $i: lines about refused SEND_ZC" "$(grep -c "refused SEND_ZC" "$run/join$i.err" || true)" 0
done

grep -h "refused SEND_ZC" "$run/serve.err" "$run/join1.err"
echo "PASS: zerocopy mode falls back to plain sends mid-stream, every sink is the source"
