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

echo "golden disk and cluster in $((t1 - t0)) s, clone of $nodes nodes and checks in $((t2 - t1)) s"
echo "PASS: a golden disk cloned onto $nodes nodes: same layout, new UUIDs in fstab, fresh identities, hook run, identical trees"
