#!/usr/bin/env bash
# A tree on a real ext4 filesystem (loop device) through serve --source DIR to join --sink DIR
# on a fresh ext4 filesystem (another loop device), over loopback with one node: every file
# type, hardlinks across directories, a sparse 1 GiB file with three 4 KiB blocks of data,
# user xattrs, security.capability, a POSIX ACL, setuid and sticky modes, owners, mtimes with
# nanoseconds, unicode and 200-byte names, a 4 KiB-deep path, an excluded directory with mode
# 1777, and a third ext4 mounted inside the source tree, which must not be crossed. The target
# tree then lists exactly like the source (tests/e2e/tree_listing.py), lost+found included.
set -euo pipefail

source "$(dirname "$0")/private_mounts.sh"
source "$(dirname "$0")/lib.sh"

require_root
command -v losetup >/dev/null || skip "needs losetup (util-linux)"
[ -e /dev/loop-control ] || skip "no /dev/loop-control: loop devices are not available here"
command -v python3 >/dev/null || skip "needs python3 (tree listing with xattrs)"
for tool in mkfs.ext4 findmnt; do
    command -v "$tool" >/dev/null || fail "$tool is missing (scripts/setup installs it)"
done
command -v setcap >/dev/null || skip "needs setcap (libcap2-bin) for the security.capability case"

loops=()
cleanup_disks() {
    local target dev
    while read -r target; do
        umount "$target" || umount -l "$target" || true
    done < <(findmnt -rn -o TARGET | grep "^$work/" | sort -r)
    for dev in "${loops[@]}"; do losetup -d "$dev" || true; done
    rm -f "$work"/disk-*
}
on_exit cleanup_disks

# ext4_at DIR SIZE: a fresh ext4 on a loop device over a sparse file, mounted on DIR.
ext4_at() {
    local dev file
    file=$work/disk-$(basename "$1")
    truncate -s "$2" "$file"
    dev=$(losetup --find --show "$file") || skip "cannot attach loop devices here"
    loops+=("$dev")
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

echo "PASS: ext4 tree to a fresh ext4 (every file type, sparse, xattrs, caps, ACL; mount not crossed)"
