#!/usr/bin/env bash
# A node that stalls mid-stream: 1 GiB to 3 nodes with --buffer 64M everywhere; once node 2 has
# stored more than 100 MiB its kaclone is stopped (SIGSTOP) for 5 s, then continued. The session
# completes (--stall-timeout 30s: a stall, not a failure): every node and serve exit 0, every sink is the source, and no node's peak RSS
# reached its buffer plus 32 MiB (96 MiB): upstream of the stalled node memory stays bounded.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster_lib.sh"
require_netns

size=$((1 << 30))
n=3
rss_limit=96 # MiB: --buffer 64M + 32 MiB
# AddressSanitizer's shadow memory and allocator quarantine add to every process's RSS: the
# bound is the product's in a normal build; a sanitizer build checks it with 64 MiB more room.
[ "${KACLONE_SANITIZED:-OFF}" = ON ] && rss_limit=160
data_dir $((4 * size))
cluster_up "$n"
random_file "$data/source" 1G
source_sha=$(sha "$data/source")

new_run sigstop
start_serve 120 --session sigstop --nodes "$n" --source "$data/source" --buffer 64M --stall-timeout 30s
for ((i = 1; i <= n; i++)); do
    start_join "$i" 120 --session sigstop --server "$(node_ip 0)" --sink "$data/node$i.img" --buffer 64M
done

# What node 2 has stored: its sink's allocated bytes (the data is random: no holes), not its
# size, which a sink may set ahead of the data.
sink2=$data/node2.img
stored2() { stat -c '%b %B' "$sink2" 2>/dev/null | awk '{printf "%.0f\n", $1 * $2}' || echo 0; }

# Wait (bounded: 60 s) until node 2 has stored more than 100 MiB.
for ((t = 0; t < 1200; t++)); do
    [ "$(stored2)" -gt $((100 << 20)) ] && break
    kill -0 "${join_pid[2]}" 2>/dev/null || break
    sleep 0.05
done
stored=$(stored2)
if ! kill -0 "${join_pid[2]}" 2>/dev/null; then
    wait_rc "${join_pid[2]}"
    fail "node 2 exited ($(describe_rc "$rc")) before it was stopped, with $stored bytes stored; its stderr ends with:
$(tail -n 5 "$run/join2.err")"
fi
[ "$stored" -gt $((100 << 20)) ] || fail "node 2 did not store 100 MiB within 60 s (it has $stored bytes)"
pid2=$(kaclone_pid "${join_pid[2]}")
[ -n "$pid2" ] || fail "no kaclone process under node 2's timeout (pid ${join_pid[2]})"

on_exit "kill -CONT $pid2 2>/dev/null"
kill -STOP "$pid2"
stopped_at=$(stored2)
[ "$stopped_at" -lt "$size" ] || fail "node 2 had stored the whole stream before it was stopped: no stall tested"
sleep 5 # the fault's duration, not an ordering
kill -CONT "$pid2"
wait_session "$n"

expect_session_ok "$n"
check_table "$n" "$size" match ok
for ((i = 1; i <= n; i++)); do
    check_stored "$i" "$size"
    expect_eq "digest node $i reports (node 1's)" "${stored_digest[i]}" "${stored_digest[1]}"
    awk -v r="${peak_rss[i]}" -v l="$rss_limit" 'BEGIN { exit !(r < l) }' ||
        fail "node $i's peak RSS is ${peak_rss[i]} MiB, not below $rss_limit MiB (--buffer 64M)"
    expect_eq "size of node $i's sink" "$(stat -c %s "$data/node$i.img")" "$size"
done
(cd "$data" && printf 'node%d.img\n' $(seq "$n") | xargs -P2 -n1 sha256sum) >"$run/sinks.sha256"
for ((i = 1; i <= n; i++)); do
    expect_eq "sha256 of node $i's sink" \
        "$(awk -v f="node$i.img" '$2 == f {print $1}' "$run/sinks.sha256")" "$source_sha"
done

echo "PASS: relay survives a node stopped for 5 s at $stopped_at bytes; peak RSS ${peak_rss[*]} MiB"
