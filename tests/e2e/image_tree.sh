#!/usr/bin/env bash
# serve --source DIR / join --sink DIR: a generated tree (every file type, hardlinks across
# directories, a sparse 256 MiB file, setuid/sticky modes, owners, mtimes with nanoseconds,
# user xattrs, security.capability, an ACL, unicode and 200-byte names, a socket, an excluded
# directory with content) to 3 nodes. Every node's tree equals the source (type, mode, owner,
# size, mtime, link count, symlink target, device number, xattrs, sha256 of every file) except
# for what must differ: the socket is skipped and counted, the excluded directory arrives empty
# with its mode and owner, and the sparse file takes under 1 MiB on every node.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster_lib.sh"
require_netns
command -v python3 >/dev/null || skip "needs python3 (tree listing with xattrs)"
command -v setcap >/dev/null || skip "needs setcap (libcap2-bin) for the security.capability case"

n=3
data_dir $((64 << 20))
cluster_up "$n"

src=$data/source
mkdir -p "$src/etc/deep/er/still" "$src/var/lib" "$src/tmp/junk" "$src/usr/bin"
printf 'hello\n' >"$src/etc/hostname"
head -c 300000 /dev/urandom >"$src/var/lib/blob"
head -c 5000 /dev/urandom >"$src/etc/deep/er/still/leaf"
ln "$src/var/lib/blob" "$src/etc/blob-link"                       # a hardlink across directories
ln -s ../var/lib/blob "$src/etc/rel-symlink"
ln -s /nonexistent/target "$src/etc/dangling"
mkfifo -m 0620 "$src/var/fifo"
mknod -m 0640 "$src/var/null-ish" c 1 3
cp /bin/true "$src/usr/bin/suid" && chmod 4755 "$src/usr/bin/suid"
cp /bin/true "$src/usr/bin/ping" && setcap cap_net_raw+ep "$src/usr/bin/ping"  # must hold, or nothing checks it
chmod 1777 "$src/tmp"
printf 'x' >"$src/tmp/junk/file"                                  # excluded: must not arrive
printf 'owned' >"$src/var/owned" && chown 4242:4343 "$src/var/owned"
printf 'ü' >"$src/etc/grüße-ünïcødé"
printf 'long' >"$src/etc/$(printf 'n%.0s' $(seq 200))"
truncate -s 256M "$src/var/sparse"
for off in 0 100 65535; do printf 'data at block %s' "$off" | dd of="$src/var/sparse" bs=4096 seek="$off" conv=notrunc status=none; done
touch -h -d '2021-02-03 04:05:06.123456789' "$src/etc/hostname" "$src/etc/rel-symlink"
python3 - "$src" <<'EOF'
import os, socket, struct, sys
src = sys.argv[1]
os.setxattr(f"{src}/etc/hostname", "user.kaclone", b"value")
os.setxattr(f"{src}/etc/deep", "user.dir", b"\x00\x01binary")
# POSIX ACL v2: user::rw-, user:1000:r--, group::r--, mask::r--, other::---
acl = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", t, p, i) for t, p, i in
      [(1, 6, 0xffffffff), (2, 4, 1000), (4, 4, 0xffffffff), (0x10, 4, 0xffffffff), (0x20, 0, 0xffffffff)])
os.setxattr(f"{src}/var/lib/blob", "system.posix_acl_access", acl)
s = socket.socket(socket.AF_UNIX)
s.bind(f"{src}/var/socket")
EOF
# Directory mtimes last, now that nothing is created in them any more.
touch -d '2020-01-01 00:00:00.5' "$src/etc/deep" "$src/tmp"

tree=$(dirname "$0")/tree_listing.py
# The source as every node must see it: without the socket and the excluded directory's content.
python3 "$tree" "$src" var/socket tmp/junk tmp/junk/file >"$work/want.txt"
grep -q '^tmp 0o41777 ' "$work/want.txt" || fail "the excluded directory is missing from the expected listing"

new_run tree
start_serve 120 --session tree --nodes "$n" --source "$src" --exclude tmp
for ((i = 1; i <= n; i++)); do
    mkdir "$data/node$i"
    start_join "$i" 120 --session tree --server "$(node_ip 0)" --sink "$data/node$i"
done
wait_session "$n"

expect_session_ok "$n"
check_no_process $(seq "$n")
sent=$(grep '^kaclone serve: sent ' "$run/serve.err") || fail "serve did not print what it sent:
$(cat "$run/serve.err")"
# The stream holds every listed entry (tmp itself included); the socket is skipped and counted.
entries=$(wc -l <"$work/want.txt")
expect_eq "serve's summary of the tree" "$sent" \
    "kaclone serve: sent $entries entries (0 warnings, 1 sockets skipped, 1 excluded directories, 0 mount points not crossed)"
check_table "$n" "" "" ok
for ((i = 1; i <= n; i++)); do
    extracted=$(tail -n 2 "$run/join$i.err" | head -n 1)
    expect_eq "node $i's extraction line" "$extracted" "kaclone join: extracted $entries entries (0 warnings) into $data/node$i"
    python3 "$tree" "$data/node$i" >"$work/node$i.txt"
    diff -u "$work/want.txt" "$work/node$i.txt" >"$work/node$i.diff" || fail "node $i's tree differs from the source:
$(head -n 40 "$work/node$i.diff")"
    blocks=$(stat -c '%b*%B' "$data/node$i/var/sparse")
    [ $((blocks)) -lt $((1 << 20)) ] || fail "node $i's sparse file takes $((blocks)) bytes, not under 1 MiB"
    [ -z "$(ls -A "$data/node$i/tmp")" ] || fail "node $i's excluded tmp is not empty"
done

echo "PASS: tree to 3 nodes (serve --source DIR --exclude, join --sink DIR)"
