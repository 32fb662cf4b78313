#!/usr/bin/env bash
# A corrupted frame is caught by every node: serve's test hook KACLONE_FAULT_FLIP_BYTE flips the
# payload byte at stream offset 5000000 after the frame checksum was computed. Every node exits
# 1; node 1 names the frame that holds it (1 MiB frames: offset 4194304), the others name it or
# the offset (not past it) where their stream stopped; serve exits 1, shows every node `failed` and lists
# node 1's checksum mismatch. (Each failed node's child resumes from the server, whose copy of
# the frame is the corrupted one too: the fault is the source's, so every node fails.)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster_lib.sh"
require_netns

size=$((64 << 20))
n=3
flip=5000000
frame=$((flip / 1048576 * 1048576)) # 4194304
data_dir $((4 * size))
cluster_up "$n"
random_file "$data/source" 64M

new_run corrupt
KACLONE_FAULT_FLIP_BYTE=$flip start_serve 60 --session corrupt --nodes "$n" --source "$data/source"
for ((i = 1; i <= n; i++)); do
    start_join "$i" 60 --session corrupt --server "$(node_ip 0)" --sink "$data/node$i.img"
done
wait_session "$n"

# Node 1 receives the corrupted frame first and must name it. A node further down names it too
# when it received the whole frame before its parent stopped, or else says where its parent's
# stream ended: at that frame or before, never later (no byte of it may be stored).
for ((i = 1; i <= n; i++)); do
    expect_rc "node $i (join) of a corrupted stream" "${join_rc[i]}" 1 "$run/join$i.err"
    last=$(tail -n 1 "$run/join$i.err")
    mismatch="kaclone join: stream 0 at offset $frame: checksum mismatch"
    cut_off_re="^kaclone join: parent closed the data connection at offset ([0-9]+) before the end of the stream: Connection reset by peer$"
    if [ "$i" -eq 1 ]; then
        expect_eq "node 1's error" "$last" "$mismatch"
    elif [ "$last" != "$mismatch" ]; then
        # Its parent stopped forwarding when it found the bad frame, maybe in the middle of
        # an earlier frame still on its way down: anywhere up to the bad frame, never past it.
        [[ "$last" =~ $cut_off_re ]] && [ "${BASH_REMATCH[1]}" -le "$frame" ] || fail "node $i's error names neither the bad frame nor where (at or before it) its stream stopped:
  got:  $last
  want: $mismatch
  or:   kaclone join: parent closed the data connection at offset N <= $frame before the end of the stream: Connection reset by peer"
    fi
done
expect_rc "serve of a corrupted stream" "$serve_rc" 1 "$run/serve.err"
check_table "$n" "" "-" failed any-parent  # no digest to compare: MISMATCH is for wrong bytes
grep -qxE "  node 1 \\($(node_ip 1 | sed 's/\\./\\\\./g')\\): stream 0 at offset $frame: checksum mismatch \\(at offset [0-9]+\\)" <<<"$failed_lines" ||
    fail "serve does not report node 1's checksum mismatch:
$failed_lines"

echo "PASS: every node detects a corrupted frame"
