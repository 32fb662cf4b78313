#!/usr/bin/env bash
# A tree on a real ext4 filesystem (loop device) through serve --source DIR to join --sink DIR
# on a fresh ext4 filesystem (another loop device), over loopback with one node: every file
# type, hardlinks across directories, a sparse 1 GiB file with three 4 KiB blocks of data,
# user xattrs, security.capability, a POSIX ACL, setuid and sticky modes, owners, mtimes with
# nanoseconds, unicode and 200-byte names, a 4 KiB-deep path, an excluded directory with mode
# 1777, and a third ext4 mounted inside the source tree, which must not be crossed. The target
# tree then lists exactly like the source (tests/e2e/tree_listing.py), lost+found included.
# Then raw copies and boot code (through tests/e2e_tools/image_raw_tool, in
# $KACLONE_IMAGE_RAW_TOOL): an ext4 partition of one loop disk copied raw onto a partition of
# another (over junk, each zero-block mode) has the same sha256 and mounts with the same files;
# boot code copied from one disk to another with a different partition table changes bytes
# 0..445 only; a 445-byte boot code file is refused with nothing written.
set -euo pipefail

source "$(dirname "$0")/private_mounts.sh"
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/disk_lib.sh"

require_loop_devices
command -v python3 >/dev/null || skip "needs python3 (tree listing with xattrs)"
for tool in mkfs.ext4 findmnt; do
    command -v "$tool" >/dev/null || fail "$tool is missing (scripts/setup installs it)"
done
command -v setcap >/dev/null || skip "needs setcap (libcap2-bin) for the security.capability case"
command -v sfdisk >/dev/null || fail "sfdisk is missing (scripts/setup installs it)"
raw_tool=${KACLONE_IMAGE_RAW_TOOL:?KACLONE_IMAGE_RAW_TOOL must name tests/e2e_tools/image_raw_tool (CTest sets it)}

on_exit disks_cleanup

# ext4_at DIR SIZE: a fresh ext4 on a loop device over a sparse file, mounted on DIR.
ext4_at() {
    local dev
    attach_disk dev "$work/disk-$(basename "$1")" "$2"
    mkfs.ext4 -q -F "$dev" >/dev/null 2>&1 || fail "mkfs.ext4 $dev failed"
    mkdir -p "$1"
    mount "$dev" "$1"
}

src=$work/src
dst=$work/dst
ext4_at "$src" 256M
ext4_at "$dst" 256M
ext4_at "$src/mnt" 64M
printf 'other filesystem' >"$src/mnt/inner-file"

mkdir -p "$src/etc" "$src/var/lib" "$src/tmp/junk" "$src/usr/bin"
printf 'hello\n' >"$src/etc/hostname"
head -c 300000 /dev/urandom >"$src/var/lib/blob"
ln "$src/var/lib/blob" "$src/etc/blob-link"
ln -s ../var/lib/blob "$src/etc/rel-symlink"
ln -s /nonexistent "$src/etc/dangling"
mkfifo -m 0620 "$src/var/fifo"
mknod -m 0640 "$src/var/char" c 1 3
cp /bin/true "$src/usr/bin/suid" && chmod 4755 "$src/usr/bin/suid"
cp /bin/true "$src/usr/bin/ping" && setcap cap_net_raw+ep "$src/usr/bin/ping"
chmod 1777 "$src/tmp"
printf 'x' >"$src/tmp/junk/file"
printf 'owned' >"$src/var/owned" && chown 4242:4343 "$src/var/owned"
printf 'ü' >"$src/etc/grüße-ünïcødé"
printf 'long' >"$src/etc/$(printf 'n%.0s' $(seq 200))"
truncate -s 1G "$src/var/sparse"
for off in 0 131072 262143; do printf 'block %s' "$off" | dd of="$src/var/sparse" bs=4096 seek="$off" conv=notrunc status=none; done
deep=$src/deep
for ((k = 0; k < 40; k++)); do deep+=/$(printf 'd%.0s' $(seq 100)); done  # a path of about 4 KiB
mkdir -p "$deep" && printf 'deep' >"$deep/leaf"
python3 - "$src" <<'EOF'
import os, socket, struct, sys
src = sys.argv[1]
os.setxattr(f"{src}/etc/hostname", "user.kaclone", b"value")
acl = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", t, p, i) for t, p, i in
      [(1, 6, 0xffffffff), (2, 4, 1000), (4, 4, 0xffffffff), (0x10, 4, 0xffffffff), (0x20, 0, 0xffffffff)])
os.setxattr(f"{src}/var/lib/blob", "system.posix_acl_access", acl)
socket.socket(socket.AF_UNIX).bind(f"{src}/var/socket")
EOF
touch -h -d '2021-02-03 04:05:06.123456789' "$src/etc/hostname" "$src/etc/rel-symlink"
touch -d '2020-01-01 00:00:00.5' "$src/tmp" "$src/etc"

tree=$(dirname "$0")/tree_listing.py
python3 "$tree" "$src" var/socket tmp/junk mnt/lost+found mnt/inner-file >"$work/want.txt"

session=imgloop$$
timeout -k 5 120 "$KACLONE" serve --session "$session" --nodes 1 --source "$src" --exclude tmp \
    >"$work/serve.out" 2>"$work/serve.err" &
serve_pid=$!
join_rc=0
timeout -k 5 120 "$KACLONE" join --session "$session" --server 127.0.0.1 --sink "$dst" \
    >"$work/join.out" 2>"$work/join.err" || join_rc=$?
serve_rc=0
wait "$serve_pid" || serve_rc=$?
[ "$join_rc" -eq 0 ] || fail "join exited $join_rc: $(tail -n 5 "$work/join.err")"
[ "$serve_rc" -eq 0 ] || fail "serve exited $serve_rc: $(tail -n 5 "$work/serve.err")"

entries=$(wc -l <"$work/want.txt")
expect_eq "serve's summary of the tree" "$(grep '^kaclone serve: sent ' "$work/serve.err")" \
    "kaclone serve: sent $entries entries (0 warnings, 1 sockets skipped, 1 excluded directories, 1 mount points not crossed)"
expect_eq "join's extraction line" "$(tail -n 2 "$work/join.err" | head -n 1)" \
    "kaclone join: extracted $entries entries (0 warnings) into $dst"
python3 "$tree" "$dst" >"$work/got.txt"
diff -u "$work/want.txt" "$work/got.txt" >"$work/tree.diff" || fail "the target tree differs from the source:
$(head -n 40 "$work/tree.diff")"
expect_eq "the not-crossed mount point on the target" "$(ls -A "$dst/mnt")" ""
expect_eq "the excluded directory on the target" "$(ls -A "$dst/tmp")" ""
blocks=$(stat -c '%b*%B' "$dst/var/sparse")
[ $((blocks)) -lt $((1 << 20)) ] || fail "the sparse 1 GiB file takes $((blocks)) bytes on the target, not under 1 MiB"

echo "ok: ext4 tree to a fresh ext4 (every file type, sparse, xattrs, caps, ACL; mount not crossed)"

# new_disk NAME SIZE TABLE: a sparse file partitioned by sfdisk with TABLE, attached with its
# partitions scanned; the device in $disk.
new_disk() {
    local file=$work/disk-$1
    truncate -s "$2" "$file"
    printf '%s\n' "$3" | sfdisk -q "$file" >/dev/null || fail "sfdisk $1 failed"
    attach_file disk "$file"
}
# partition_of DISK N START SECTORS: partition N of DISK in $part; where the kernel makes no
# node for it (no partition scan here), a loop device over the same bytes.
partition_of() {
    local k
    for ((k = 0; k < 50; k++)); do
        [ -b "${1}p$2" ] && { part=${1}p$2; return; }
        sleep 0.1
    done
    part=$(losetup --find --show --offset $(($3 * 512)) --sizelimit $(($4 * 512)) "$(losetup -n -O BACK-FILE "$1")")
    track_loop "$part"
}
sha() { sha256sum "$1" | cut -d' ' -f1; }
# bytes FILE SKIP COUNT: sha256 of COUNT bytes of FILE from offset SKIP.
bytes() { dd if="$1" bs=64K iflag=skip_bytes,count_bytes skip="$2" count="$3" status=none | sha256sum | cut -d' ' -f1; }
files_of() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum); }

# Disk a: the ext4 to copy on partition 1 (32 MiB). Disk b: another table, its partition 2 of
# the same size is the target.
new_disk a 80M $'label: dos\nstart=2048, size=65536, type=83\nstart=67584, size=65536, type=83'
disk_a=$disk
new_disk b 64M $'label: dos\nstart=2048, size=32768, type=82\nstart=34816, size=65536, type=83'
disk_b=$disk
partition_of "$disk_a" 1 2048 65536
from=$part
partition_of "$disk_b" 2 34816 65536
to=$part
mkfs.ext4 -q -F "$from" >/dev/null 2>&1 || fail "mkfs.ext4 $from failed"
mkdir -p "$work/rawsrc" "$work/rawdst"
mount "$from" "$work/rawsrc"
mkdir -p "$work/rawsrc/etc/deep/er"
printf 'raw partition\n' >"$work/rawsrc/etc/hostname"
head -c 3000000 /dev/urandom >"$work/rawsrc/blob"
head -c 5000 /dev/urandom >"$work/rawsrc/etc/deep/er/small"
ln -s ../blob "$work/rawsrc/etc/link"
files_of "$work/rawsrc" >"$work/raw-files.want"
umount "$work/rawsrc"
want=$(sha "$from")

for mode in discard hole write; do
    # Junk first: a zero block that is skipped instead of written would show.
    head -c $((65536 * 512)) /dev/zero | tr '\0' '\377' | dd of="$to" bs=1M iflag=fullblock oflag=direct status=none
    "$raw_tool" raw "$from" "$to" "$mode" >"$work/raw-$mode.out" 2>&1 || fail "raw $mode: $(cat "$work/raw-$mode.out")"
    expect_eq "sha256 of the partition copied raw ($mode)" "$(sha "$to")" "$want"
done
"$raw_tool" raw "$from" "$work/raw-copy.img" hole >"$work/raw-file.out" 2>&1 || fail "raw to a file: $(cat "$work/raw-file.out")"
expect_eq "sha256 of the partition copied raw into a file" "$(sha "$work/raw-copy.img")" "$want"
blocks=$(stat -c '%b*%B' "$work/raw-copy.img")
[ $((blocks)) -lt $((65536 * 512 / 2)) ] || fail "the raw copy in a file takes $((blocks)) bytes: its zero blocks are not holes"

mount -o ro "$to" "$work/rawdst" || fail "the raw copy on $to does not mount"
files_of "$work/rawdst" >"$work/raw-files.got"
diff -u "$work/raw-files.want" "$work/raw-files.got" >&2 || fail "the raw copy's files differ"
expect_eq "the raw copy's symlink" "$(readlink "$work/rawdst/etc/link")" "../blob"
umount "$work/rawdst"

# Boot code: from disk a (random code) onto disk c, whose table (and code) differ.
new_disk c 64M $'label: dos\nstart=4096, size=20480, type=7, bootable\nstart=24576, size=40960, type=c'
disk_c=$disk
head -c 446 /dev/urandom | dd of="$disk_a" bs=446 count=1 conv=notrunc,fsync status=none
head -c 446 /dev/urandom | dd of="$disk_c" bs=446 count=1 conv=notrunc,fsync status=none
table_c=$(bytes "$disk_c" 446 66)
rest_c=$(bytes "$disk_c" 446 $((1048576 - 446)))
# The disk signature (label-id, bytes 440..443) is part of the 446 bytes and travels with them.
partitions() { sfdisk --dump "$1" | grep -v '^label-id:'; }
dump_c=$(partitions "$disk_c")
[ "$(bytes "$disk_a" 0 446)" != "$(bytes "$disk_c" 0 446)" ] || fail "disks a and c start with the same boot code"
[ "$(bytes "$disk_a" 446 66)" != "$table_c" ] || fail "disks a and c have the same partition table"

"$raw_tool" mbr "$disk_a" "$disk_c" >"$work/mbr.out" 2>&1 || fail "mbr: $(cat "$work/mbr.out")"
expect_eq "disk c's boot code after the mbr copy" "$(bytes "$disk_c" 0 446)" "$(bytes "$disk_a" 0 446)"
expect_eq "disk c's partition table and signature (bytes 446..511)" "$(bytes "$disk_c" 446 66)" "$table_c"
expect_eq "disk c's bytes 446 to 1 MiB" "$(bytes "$disk_c" 446 $((1048576 - 446)))" "$rest_c"
expect_eq "disk c's partitions (sfdisk --dump)" "$(partitions "$disk_c")" "$dump_c"

head -c 446 /dev/urandom >"$work/boot.bin"
"$raw_tool" mbr-file "$work/boot.bin" "$disk_c" >"$work/mbr-file.out" 2>&1 || fail "mbr-file: $(cat "$work/mbr-file.out")"
expect_eq "disk c's boot code after mbr-file" "$(bytes "$disk_c" 0 446)" "$(sha "$work/boot.bin")"
expect_eq "disk c's partition table after mbr-file" "$(bytes "$disk_c" 446 66)" "$table_c"

head -c 445 /dev/urandom >"$work/boot445.bin"
before=$(bytes "$disk_c" 0 1048576)
run_capture "$raw_tool" mbr-file "$work/boot445.bin" "$disk_c"
expect_eq "mbr-file with 445 bytes: exit code" "$rc" 1
expect_eq "mbr-file with 445 bytes: message" "$err" \
    "image_raw_tool: $work/boot445.bin is 445 bytes: boot code must be exactly 446 bytes"
expect_eq "disk c's first MiB after the refused mbr-file" "$(bytes "$disk_c" 0 1048576)" "$before"

echo "PASS: ext4 tree to a fresh ext4 (every file type, sparse, xattrs, caps, ACL; mount not crossed); raw partition copy mounts; mbr keeps the table"
