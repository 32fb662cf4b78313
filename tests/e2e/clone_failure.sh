#!/usr/bin/env bash
# The whole-machine clone when things go wrong, and what the operator sees: serve refuses a
# golden filesystem that is not mounted, and a --desc partition in MiB too small for the golden
# data (before any node is touched); a node refuses a partition in % that is too small on its
# disk (before it writes); --fill-last gives a larger node disk's rest to the last partition; `kaclone status` shows
# the joined nodes while the server waits; a node whose disk is too small fails at its layout,
# says why, and the two others (one of them its child in the chain) finish their clones; the
# server exits 1, keeps three logs, and its JSON shows each node's phases in order. The two
# clones also get an unmounted partition byte for byte (--raw 3) and the golden boot code
# (--mbr) without losing their own partition table.
set -euo pipefail
source "$(dirname "$0")/private_mounts.sh"
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster_lib.sh"
source "$(dirname "$0")/disk_lib.sh"
require_netns
require_loop_devices
for tool in blkid mkfs.ext4 sfdisk sha256sum; do
    command -v "$tool" >/dev/null || fail "$tool is missing (scripts/setup installs it)"
done

on_exit disks_cleanup  # before cluster_up: the disks go after the cluster

# The golden disk: / and /data, mounted at $golden, and partition 3 not mounted (sent raw).
attach_disk gdisk "$work/golden.img" 128M
golden=$work/golden
printf 'linux 64 fs=ext4 mount=/\nlinux 32 fs=ext4 mount=/data\nlinux 16 fs=ext4\n' >"$work/golden.desc"
"$KACLONE" layout --desc "$work/golden.desc" "$gdisk" --target "$golden" --yes >"$work/layout.log" ||
    fail "layout of the golden disk failed: $(cat "$work/layout.log")"
mkdir -p "$golden/etc" "$golden/data/set"
head -c 3M /dev/urandom >"$golden/data/set/blob"
echo golden >"$golden/etc/hostname"
echo "UUID=$(blkid -p -o value -s UUID "${gdisk}p1") / ext4 defaults 0 1" >"$golden/etc/fstab"
echo "UUID=$(blkid -p -o value -s UUID "${gdisk}p2") /data ext4 defaults 0 2" >>"$golden/etc/fstab"
blob_sha=$(sha "$golden/data/set/blob")
mkdir -p "$work/raw"
mount "${gdisk}p3" "$work/raw"
head -c 1M /dev/urandom >"$work/raw/payload"
umount "$work/raw"
raw_sha=$(sha "${gdisk}p3")
# Boot code: random bytes 0..439 (440..445 are the disk signature and a reserved word).
head -c 440 /dev/urandom | dd of="$gdisk" conv=notrunc status=none
boot_sha=$(head -c 446 "$gdisk" | sha256sum | cut -d' ' -f1)

cluster_up 3

# ---- a golden filesystem that is not mounted is refused before anything starts ----
new_run unmounted
umount "$golden/data"
start_serve 30 --session cf --nodes 3 --disk "$gdisk" --root "$golden" --logs "$run/logs"
wait_rc "$serve_pid"
expect_eq "serve with /data unmounted: exit code" "$rc" 1
expect_eq "serve with /data unmounted: message" "$(cat "$run/serve.err")" \
    "kaclone serve: ${gdisk}p2 holds a filesystem (ext4) that is not mounted below $golden; mount it there (the clone would get it empty), or send it byte for byte with --raw 2: refused before any node was touched"
mount "${gdisk}p2" "$golden/data"

# ---- a description whose partition cannot hold the golden data ----
# A size in MiB is checked by serve before any node is touched...
printf 'linux 64 fs=ext4 mount=/\nlinux 2 fs=ext4 mount=/data\nlinux 16 fs=ext4\n' >"$work/small.desc"
new_run small
start_serve 30 --session cf --nodes 1 --disk "$gdisk" --desc "$work/small.desc" --root "$golden" --raw 3
wait_rc "$serve_pid"
expect_eq "serve with a 2 MiB /data: exit code" "$rc" 1
[[ "$(tail -n 1 "$run/serve.err")" =~ ^"kaclone serve: $work/small.desc:2: the partition for /data is 2 MiB, but the golden /data has "[0-9.]+" MiB in use: it cannot fit: refused before any node was touched"$ ]] ||
    fail "serve with a 2 MiB /data: last line: $(tail -n 1 "$run/serve.err")"
# ... a percentage by each node on its own disk, before it writes anything: 1% of 256 MiB.
printf 'linux 64 fs=ext4 mount=/\nlinux 1%% fs=ext4 mount=/data\nlinux 16 fs=ext4\n' >"$work/percent.desc"
new_run percent
attach_disk "pdisk" "$work/percent.img" 256M
start_serve 60 --session cf --nodes 1 --disk "$gdisk" --desc "$work/percent.desc" --root "$golden" --raw 3 --bootloader none
start_join 1 60 --session cf --server "$(node_ip 0)" --disk "$pdisk" --yes --target "/run/kaclone-cf-1"
wait_session 1
expect_rc "serve (its node's disk too small for /data)" "$serve_rc" 1 "$run/serve.err"
expect_rc "node 1 (/data at 1% of its disk)" "${join_rc[1]}" 1 "$run/join1.err"
[[ "$(tail -n 1 "$run/join1.err")" =~ ^"kaclone join: the server's description:2: partition 2 is 2 MiB on $pdisk, but the golden /data has "[0-9.]+" MiB in use: it cannot fit (nothing was written): Input/output error"$ ]] ||
    fail "node 1 does not say that /data cannot fit: $(tail -n 3 "$run/join1.err")"
cmp -s -n $((1 << 20)) "$pdisk" /dev/zero || fail "node 1 wrote to its disk although /data could not fit"

# ---- --fill-last: the same 256 MiB disk gets the golden's partitions, the last one up to its end ----
new_run fill
start_serve 60 --session cf --nodes 1 --disk "$gdisk" --fill-last --root "$golden" --raw 3 --bootloader none
start_join 1 60 --session cf --server "$(node_ip 0)" --disk "$pdisk" --yes --target "/run/kaclone-cf-1"
wait_session 1
expect_rc "serve --fill-last" "$serve_rc" 0 "$run/serve.err"
expect_rc "node 1 (--fill-last)" "${join_rc[1]}" 0 "$run/join1.err"
# Partitions 1 and 2 as on the golden disk (64 and 32 MiB from 1 MiB on), 3 from 97 MiB to the end.
expect_eq "node 1's partition sizes in sectors" "$(sfdisk -d "$pdisk" | sed -nE "s|^${pdisk}p[0-9] : .*size= *([0-9]+).*|\1|p" | paste -sd' ')" \
    "$((64 << 11)) $((32 << 11)) $(((256 - 97) << 11))"
expect_eq "node 1: partition 3 byte for byte" "$(head -c 16M "${pdisk}p3" | sha256sum | cut -d' ' -f1)" "$raw_sha"
detach_disk "$pdisk"

# ---- the session: nodes 1 and 3 have room, node 2 (in the middle of the chain) has not ----
new_run session
attach_disk "disk[1]" "$work/node1.img" 256M
attach_disk "disk[2]" "$work/node2.img" 64M
attach_disk "disk[3]" "$work/node3.img" 256M
# The clones' partition 3 is larger than the golden one (--desc), so their partition table
# differs from the golden one: the boot code copy must leave theirs.
printf 'linux 64 fs=ext4 mount=/\nlinux 32 fs=ext4 mount=/data\nlinux 24 fs=ext4\n' >"$work/clone.desc"
start_serve 180 --session cf --nodes 3 --disk "$gdisk" --desc "$work/clone.desc" --root "$golden" --raw 3 --mbr "$gdisk" \
    --logs "$run/logs" --bootloader none --json
for i in 1 2; do
    start_join "$i" 180 --session cf --server "$(node_ip 0)" --disk "${disk[i]}" --yes --target "/run/kaclone-cf-$i"
done
wait_lines "$run/serve.err" "joined, 2 of 3"

# kaclone status from another namespace: the two nodes that joined, waiting.
run_capture ip netns exec "${prefix}3" "$KACLONE" status --session cf --server "$(node_ip 0)"
expect_eq "status while waiting: exit code" "$rc" 0
expect_eq "status while waiting: state" "$(head -n1 <<<"$out")" "session 'cf': waiting for nodes: 2 of 3 joined"
expect_eq "status while waiting: rows" "$(tail -n +3 <<<"$out" | awk '{print $1, $3, $4, $5}' | sort | paste -sd' ')" \
    "- $(node_ip 1) - waiting - $(node_ip 2) - waiting"

start_join 3 180 --session cf --server "$(node_ip 0)" --disk "${disk[3]}" --yes --target /run/kaclone-cf-3
wait_session 3
expect_rc "serve" "$serve_rc" 1 "$run/serve.err"
expect_rc "node 1" "${join_rc[1]}" 0 "$run/join1.err"
expect_rc "node 2" "${join_rc[2]}" 1 "$run/join2.err"
expect_rc "node 3" "${join_rc[3]}" 0 "$run/join3.err"
too_small="the server's description:1 (partitions need 121 MiB but the disk ${disk[2]} has 64 MiB): partition does not fit on the disk"
grep -qF -- "$too_small" "$run/join2.err" || fail "node 2 does not say that its disk is too small:
$(tail -n 5 "$run/join2.err")"

# The server's JSON: node 2 failed with that reason, the others went through every phase.
failed_line=$(grep '"event":"node_failed"' "$run/serve.out") || fail "no node_failed event in serve's JSON"
expect_eq "failed node" "$(json_field "$failed_line" address)" "$(node_ip 2)"
grep -qF -- "$too_small" <<<"$(json_field "$failed_line" message)" || fail "node_failed does not say why: $failed_line"
for i in 1 3; do
    phases=$(grep '"event":"phase"' "$run/serve.out" | grep "\"address\":\"$(node_ip "$i")\"" |
        while read -r line; do json_field "$line" phase; done | paste -sd' ')
    expect_eq "phases of node $i" "$phases" "receiving layout extracting extracting extracting extracting fixup done"
done
summary=$(grep '"event":"summary"' "$run/serve.out")
expect_eq "summary: nodes ok" "$(json_field "$summary" ok)" 2

# Every node's log is kept; node 2's says why it failed.
expect_eq "log files" "$(ls "$run/logs" | grep -c '\.log$')" 3
grep -lF -- "$too_small" "$run"/logs/*"$(node_ip 2)"*.log >/dev/null ||
    fail "node 2's log on the server does not hold its error: $(ls "$run/logs")"

# The two clones hold the golden data, under fstabs naming their own new filesystems.
for i in 1 3; do
    mkdir -p "$work/check$i"
    mount -o ro "${disk[i]}p1" "$work/check$i"
    mount -o ro "${disk[i]}p2" "$work/check$i/data"
    expect_eq "node $i: the blob" "$(sha "$work/check$i/data/set/blob")" "$blob_sha"
    expect_eq "node $i: fstab" "$(awk '{print $1, $2}' "$work/check$i/etc/fstab" | paste -sd' ')" \
        "UUID=$(blkid -p -o value -s UUID "${disk[i]}p1") / UUID=$(blkid -p -o value -s UUID "${disk[i]}p2") /data"
    umount "$work/check$i/data" "$work/check$i"
    expect_eq "node $i: partition 3 byte for byte" "$(head -c 16M "${disk[i]}p3" | sha256sum | cut -d' ' -f1)" "$raw_sha"
    expect_eq "node $i: boot code" "$(head -c 446 "${disk[i]}" | sha256sum | cut -d' ' -f1)" "$boot_sha"
    expect_eq "node $i: its partition table after the boot code (partition 3 in sectors)" \
        "$(sfdisk -d "${disk[i]}" | sed -nE "s|^${disk[i]}p3 : .*size= *([0-9]+).*|\1|p")" $((24 << 11))
done
check_no_process 1 2 3
echo "PASS: clone failure, status and logs"
