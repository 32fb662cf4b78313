#!/usr/bin/env bash
# The whole-machine clone, end to end (the CI soak test of issue 8): a golden loop disk shaped
# like the old ka-deploy documentation's example (dos: swap, ext4 /, extended with a logical xfs
# /home) holding a realistic tree (tests/e2e/golden_lib.sh: thousands of files, hardlinks,
# symlinks, xattrs, a capability, sparse files, a fifo, fstab by UUIDs, machine-id, SSH host
# keys, a hook in /etc/kaclone/fixup.d) is served by `kaclone serve --disk` from node 0 of a
# netns cluster to 4 nodes, each joining with `kaclone join --disk` on a blank loop disk of its
# own. Every clone must have the golden partition table and filesystem types, new distinct
# UUIDs named by its fstab, a fresh machine-id and SSH host keys, its host name from the
# --hostnames file, the hook's marker (run chrooted, with its NODE_INDEX), an empty /tmp, and
# otherwise a tree identical to the golden one file by file; serve exits 0 with 4 node logs.
# Then a clone interrupted by SIGINT while mounted: it unmounts and fails with the reason.
set -euo pipefail

source "$(dirname "$0")/private_mounts.sh"
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster_lib.sh"
source "$(dirname "$0")/golden_lib.sh"

nodes=4
require_netns
golden_require

# Disks (golden and one per node, 1 GiB sparse each, about 100 MiB written on each) live in
# $data; they are undone after the cluster is down (on_exit runs the last added first).
data_dir $(((nodes + 1) * (256 << 20)))
on_exit disks_cleanup
t0=$SECONDS
golden_make "$data/golden.img" "$work/golden"
golden_fill
blank_disks "$nodes"
cluster_up "$nodes"
t1=$SECONDS

clone_round "$nodes" "diskclone$$" 180
t2=$SECONDS

# Ctrl-C in the middle of a clone: node 1 joins with a 4 MiB buffer, so the server waits for it
# while it lays out its disk; serve is stopped then, so node 1 stays mid-extraction, mounted,
# until it is sent SIGINT. It unmounts, says so, fails with the signal's name; once serve runs
# again it shows node 1 failed for that reason and exits 1.
new_run "interrupt$$"
start_serve 120 --session "interrupt$$" --nodes 1 --disk "$golden_dev" --root "$golden_mnt" --exclude /tmp \
    --bootloader none --buffer 4M --json
mkdir -p "$run/target1"
start_join 1 120 --session "interrupt$$" --server "$(node_ip 0)" --disk "${node_disk[1]}" --yes --target "$run/target1" --buffer 4M
wait_lines "$run/serve.out" '"event":"phase".*"phase":"layout"'
serve_kaclone=$(kaclone_pid "$serve_pid")
node_kaclone=$(kaclone_pid "${join_pid[1]}")
[ -n "$serve_kaclone" ] && [ -n "$node_kaclone" ] || fail "serve or node 1 is not running at node 1's layout"
on_exit "kill -CONT $serve_kaclone 2>/dev/null"
kill -STOP "$serve_kaclone"
# Within 10 s: a node gives up on a server it has not heard from for 15 s.
for ((t = 0; t < 200; t++)); do
    grep -qF " $run/target1 " "/proc/$node_kaclone/mountinfo" 2>/dev/null && break
    sleep 0.05
done
grep -qF " $run/target1 " "/proc/$node_kaclone/mountinfo" || fail "node 1 did not mount its clone at $run/target1 within 10 s:
$(cat "$run/join1.err")"
kill -INT "$node_kaclone"
wait_rc "${join_pid[1]}"
expect_rc "node 1 (join --disk, interrupted)" "$rc" 1 "$run/join1.err"
expect_eq "node 1's last two lines" "$(tail -n 2 "$run/join1.err")" \
    "kaclone join: stopped before the clone was complete: everything unmounted, ${node_disk[1]} holds no usable clone
kaclone join: SIGINT: stopped by a signal"
kill -CONT "$serve_kaclone"
wait_rc "$serve_pid"
expect_rc "serve (its node interrupted)" "$rc" 1 "$run/serve.err"
line=$(grep '"event":"node_failed"' "$run/serve.out") || fail "no node_failed event in serve's JSON output:
$(cat "$run/serve.out")"
expect_eq "serve's node_failed event: node" "$(json_field "$line" node)" 1
expect_eq "serve's node_failed event: message" "$(json_field "$line" message)" \
    "SIGINT: stopped by a signal (at offset $(json_field "$line" bytes))"
t3=$SECONDS

echo "golden disk and cluster in $((t1 - t0)) s, clone of $nodes nodes and checks in $((t2 - t1)) s, interrupted clone in $((t3 - t2)) s"
echo "PASS: a golden disk cloned onto $nodes nodes: same layout, new UUIDs in fstab, fresh identities, hook run, identical trees"
