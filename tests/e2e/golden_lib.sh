# The golden disk of the whole-machine clone tests (tests/e2e/disk_clone.sh, scripts/soak) and
# the check of a clone against it. Sourced after lib.sh (clone_round also needs cluster_lib.sh),
# never run.
#
#   golden_require            skip unless root, loop devices, python3 and ssh-keygen are here;
#                             fail when a tool scripts/setup installs is missing; $home_fs: xfs,
#                             or ext4 when mkfs.xfs is missing or the kernel has no xfs
#   (disk_lib.sh)             attach_disk, detach_disk, disks_cleanup: register disks_cleanup
#                             with on_exit BEFORE cluster_up, so that it runs after the cluster
#                             (and every kaclone in it) is gone
#   golden_make FILE MNT      the old ka-deploy documentation's example on a 1 GiB sparse disk:
#                             dos, 1: swap 64 MiB, 2: ext4 / 384 MiB (bootable), 3: extended over
#                             the rest, 5: logical $home_fs /home over the rest of it; mounted
#                             at MNT and MNT/home; $golden_dev, $golden_mnt
#   golden_fill               the golden system's tree on it (see the function), then its
#                             listing ($golden_list), which check_clone compares clones to
#   check_clone_reset         forget the UUIDs and host keys of the clones checked so far
#   check_clone NAME DEV HOSTNAME MARKER
#                             the clone on DEV (not mounted) against the golden disk: same
#                             partition table but ids, same filesystem types, new UUIDs seen on
#                             no other disk and no other clone since check_clone_reset, fstab
#                             naming exactly them, a fresh machine-id, new SSH host keys, etc/
#                             hostname = HOSTNAME (and the 127.0.1.1 line of etc/hosts), the
#                             hook's marker file = MARKER, no lease or net rule, an empty /tmp of
#                             mode 1777, the sparse files still sparse, and every other entry
#                             identical (type, mode, owner, mtime, size, content, xattrs, symlink
#                             target, device number, hardlink structure). NAME names the clone in
#                             messages and its mount directory ($work/check-NAME)
#   golden_marker HOSTNAME INDEX  the marker the golden hook writes on a clone named HOSTNAME
#                             whose NODE_INDEX is INDEX (empty when the clone has no --hostnames
#                             line)
#   clone_round N SESSION SECS    (cluster_lib.sh) one whole-machine clone, logs in
#                             $work/SESSION: serve --disk of the golden disk (--root, --exclude
#                             /tmp, --bootloader none, --hostnames naming node I soak-I, listed
#                             backwards so that its NODE_INDEX is N-I, --logs, --json) in node 0
#                             to nodes 1..N, node I joining with its blank disk ${node_disk[I]}
#                             (see blank_disks), every process under `timeout SECS`. Checks
#                             serve's and every join's exit code, no process left, N node logs
#                             (HOST-ADDRESS.log, with the hook's output, ending with `done:`),
#                             serve's JSON summary (ok = N), then check_clone of every node
#   blank_disks N             ${node_disk[1..N]}: fresh blank 1 GiB loop disks in $data (those of
#                             an earlier call are detached and removed first)
#   partitions_visible DEV N...   the kernel knows partitions N... of DEV and /dev has their nodes
#   tree_list DIR             the listing check_clone compares (tests/e2e/tree_listing.py --links,
#                             leaving out what the fixups change, directories they write in
#                             without their mtime)
#   table_of DEV              sfdisk's dump of DEV without ids, partitions named partN

source "$(dirname "${BASH_SOURCE[0]}")/disk_lib.sh"

golden_size=1G
node_disk=()

golden_require() {
    require_loop_devices
    command -v python3 >/dev/null || skip "needs python3 (tree listing with xattrs)"
    command -v ssh-keygen >/dev/null || skip "needs ssh-keygen (openssh-client): the clones' SSH host keys are made by the golden system's own ssh-keygen"
    local tool
    for tool in sfdisk partx blkid findmnt mkfs.ext4 mkswap ldd sha256sum truncate; do
        command -v "$tool" >/dev/null || fail "$tool is missing (scripts/setup installs it)"
    done
    home_fs=xfs
    if ! command -v mkfs.xfs >/dev/null; then
        home_fs=ext4
        echo "NOTE: no mkfs.xfs here: /home of the golden disk is ext4"
    elif ! grep -qw xfs /proc/filesystems && ! { modprobe xfs 2>/dev/null && grep -qw xfs /proc/filesystems; }; then
        home_fs=ext4
        echo "NOTE: this kernel cannot mount xfs: /home of the golden disk is ext4"
    fi
}

# part DEV N: partition N of loop device DEV.
part() { echo "${1}p$2"; }
# partitions_visible DEV N...: make sure the kernel knows partitions N... of DEV and /dev has
# their nodes (BLKRRPART may add nothing here, and there may be no udev: partx -u, then mknod
# from sysfs, as `kaclone layout` does).
partitions_visible() {
    local dev=$1 n name sys p
    shift
    name=${dev#/dev/}
    for n in "$@"; do
        [ -e "/sys/block/$name/${name}p$n" ] || partx -u "$dev" 2>/dev/null || true
        [ -e "/sys/block/$name/${name}p$n" ] || partx -a "$dev" 2>/dev/null || true
    done
    for n in "$@"; do
        sys=/sys/block/$name/${name}p$n/dev
        p=$(part "$dev" "$n")
        [ -e "$sys" ] || fail "the kernel does not see partition $n of $dev"
        [ -b "$p" ] || mknod "$p" b "$(cut -d: -f1 "$sys")" "$(cut -d: -f2 "$sys")" || fail "cannot make $p"
    done
}
# blkid -p probes the device itself, never blkid's cache.
probe() { blkid -p -o value -s "$1" "$2" 2>/dev/null || true; }

golden_make() {
    local file=$1 mnt=$2
    attach_disk golden_dev "$file" "$golden_size"
    golden_mnt=$mnt
    # Sectors: the placement `kaclone layout` gives this description (1 MiB steps, each logical
    # partition 1 MiB after the start of the extended one), so that clones have the same table.
    sfdisk -q "$golden_dev" >/dev/null <<EOF || fail "sfdisk on the golden disk failed"
label: dos
unit: sectors

$(part "$golden_dev" 1) : start=2048, size=131072, type=82
$(part "$golden_dev" 2) : start=133120, size=786432, type=83, bootable
$(part "$golden_dev" 3) : start=919552, type=5
$(part "$golden_dev" 5) : start=921600, type=83
EOF
    partitions_visible "$golden_dev" 1 2 5
    mkswap -L golden-swap "$(part "$golden_dev" 1)" >/dev/null || fail "mkswap on the golden disk failed"
    mkfs.ext4 -q -F -L golden-root "$(part "$golden_dev" 2)" >/dev/null 2>&1 || fail "mkfs.ext4 on the golden disk failed"
    if [ "$home_fs" = xfs ]; then
        mkfs.xfs -q -f -L golden-home "$(part "$golden_dev" 5)" >/dev/null 2>&1 || fail "mkfs.xfs on the golden disk failed"
    else
        mkfs.ext4 -q -F -L golden-home "$(part "$golden_dev" 5)" >/dev/null 2>&1 || fail "mkfs.ext4 (home) on the golden disk failed"
    fi
    mkdir -p "$mnt"
    mount "$(part "$golden_dev" 2)" "$mnt" || fail "cannot mount the golden root"
    mkdir -p "$mnt/home"
    mount "$(part "$golden_dev" 5)" "$mnt/home" || fail "cannot mount the golden /home"
}

# golden_install PATH: the host's program PATH and its libraries at the same paths in the golden
# root, so that the clone's chroot can run it (as tests/e2e/fixup.sh does).
golden_install() {
    local lib root=$golden_mnt
    mkdir -p "$root$(dirname "$1")"
    cp -L "$1" "$root$1"
    for lib in $(ldd "$1" | grep -o '/[^ ]*'); do
        mkdir -p "$root$(dirname "$lib")"
        [ -e "$root$lib" ] || cp -L "$lib" "$root$lib"
    done
}

golden_marker() { echo "hostname=$1 index=$2 proc=yes dev=yes"; }

# The golden system: a few thousand files of this host (zoneinfo, licenses) and generated ones in
# / and /home, hardlinks across directories, relative, absolute and dangling symlinks, user
# xattrs, a POSIX ACL, security.capability, setuid/setgid/sticky modes, owners, mtimes with
# nanoseconds, unicode and 200-byte names, sparse files, a fifo and a device node, a /tmp with
# content (excluded: it must arrive empty), and the files the fixups change: /etc/fstab by UUIDs,
# machine-ids, hostname, hosts, SSH host keys (made by ssh-keygen), a net rule and DHCP leases,
# and the hook /etc/kaclone/fixup.d/50-marker, run chrooted by the clone's fixups with this
# host's dash and ssh-keygen (and their libraries) installed in the golden root.
golden_fill() {
    local root=$golden_mnt
    local u_swap u_root u_home
    u_swap=$(probe UUID "$(part "$golden_dev" 1)")
    u_root=$(probe UUID "$(part "$golden_dev" 2)")
    u_home=$(probe UUID "$(part "$golden_dev" 5)")
    if [ -z "$u_swap" ] || [ -z "$u_root" ] || [ -z "$u_home" ]; then fail "the golden filesystems have no UUIDs"; fi

    mkdir -p "$root"/{bin,etc/ssh,etc/kaclone/fixup.d,etc/udev/rules.d,var/lib/dbus,var/lib/dhcp,var/log,usr/bin,usr/share,srv,proc,sys,dev,run,root,tmp/junk,tmp/.X11-unix}
    cat >"$root/etc/fstab" <<EOF
# /etc/fstab: static file system information (kaclone golden test disk).
#
# <file system>                           <mount point> <type>  <options>          <dump> <pass>
UUID=$u_root /             ext4    errors=remount-ro  0      1
UUID=$u_home /home         $home_fs     defaults           0      2
UUID=$u_swap none          swap    sw                 0      0
tmpfs                                     /tmp          tmpfs   defaults,size=64M  0      0
EOF
    echo 0123456789abcdef0123456789abcdef >"$root/etc/machine-id"
    chmod 444 "$root/etc/machine-id"
    echo 0123456789abcdef0123456789abcdef >"$root/var/lib/dbus/machine-id"
    echo golden >"$root/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\tgolden.lab\tgolden\n\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
    printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
    printf 'Port 22\nPermitRootLogin no\n' >"$root/etc/ssh/sshd_config"
    ssh-keygen -q -A -f "$root" || fail "ssh-keygen -A for the golden host keys failed"
    echo 'SUBSYSTEM=="net", ATTR{address}=="52:54:00:12:34:56", NAME="eth0"' >"$root/etc/udev/rules.d/70-persistent-net.rules"
    echo 'ACTION=="add", SUBSYSTEM=="block", RUN+="/bin/true"' >"$root/etc/udev/rules.d/60-keep.rules"
    echo 'lease { fixed-address 10.0.0.5; }' >"$root/var/lib/dhcp/dhclient.eth0.leases"
    echo 'send host-name = gethostname();' >"$root/var/lib/dhcp/dhclient.conf.keep"
    # The hook: only in the clone's root (the marker file proves it), with /proc and /dev there.
    echo "kaclone golden test tree" >"$root/etc/kaclone/golden-tree"
    cat >"$root/etc/kaclone/fixup.d/50-marker" <<'EOF'
#!/bin/sh
# kaclone test hook: runs chrooted in a fresh clone; records what it was told and saw.
[ -e /etc/kaclone/golden-tree ] || { echo "not chrooted into the clone"; exit 1; }
p=no; [ -e /proc/self/status ] && p=yes
d=no; [ -c /dev/null ] && d=yes
echo "hostname=$HOSTNAME index=$NODE_INDEX proc=$p dev=$d" >/var/lib/kaclone-marker
echo "marker written for $HOSTNAME"
EOF
    chmod 755 "$root/etc/kaclone/fixup.d/50-marker"
    echo 'hooks run in name order; this file is not executable' >"$root/etc/kaclone/fixup.d/README"
    golden_install "$(readlink -f /bin/sh)"
    [ -e "$root/bin/sh" ] || ln -s "$(readlink -f /bin/sh)" "$root/bin/sh"
    golden_install "$(command -v ssh-keygen)"
    # A few thousand files of this host, as they are.
    [ -d /usr/share/zoneinfo ] && cp -a /usr/share/zoneinfo "$root/usr/share/"
    [ -d /usr/share/common-licenses ] && cp -a /usr/share/common-licenses "$root/usr/share/"
    printf 'junk' >"$root/tmp/junk/file"
    chmod 1777 "$root/tmp"
    python3 - "$root" <<'EOF' || fail "generating the golden tree failed"
import os, random, struct, sys
root = sys.argv[1]
rnd = random.Random(20240607)
def data(n):
    return rnd.randbytes(n) if n % 3 else (b"kaclone %d\n" % n) * (n // 10 + 1)
def put(rel, n, mode=0o644, uid=0, gid=0, mtime=None):
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(data(n)[:n])
    os.chown(p, uid, gid)
    os.chmod(p, mode)
    if mtime is not None:
        os.utime(p, ns=(mtime, mtime))
    return p
# /srv/data: 40 directories of 50 files, mostly small, a few of 64 KiB .. 1 MiB.
for d in range(40):
    for i in range(50):
        n = rnd.choice([0, 1, 100, 511, 4096, 4097, 9000]) if i % 17 else rnd.randint(65536, 1 << 20)
        put("srv/data/d%02d/f%03d" % (d, i), n, mode=rnd.choice([0o644, 0o600, 0o640, 0o755, 0o444]),
            uid=rnd.choice([0, 0, 1000, 1001, 4242]), gid=rnd.choice([0, 100, 1000, 4343]),
            mtime=1600000000 * 10**9 + rnd.randint(0, 10**17))
# /home (its own filesystem): five users.
for u in range(1, 6):
    os.makedirs(f"{root}/home/user{u}/.config", exist_ok=True)
    for i in range(60):
        put(f"home/user{u}/{'.config/' if i % 5 == 0 else ''}doc{i:02d}.txt", rnd.randint(0, 20000),
            mode=0o600 if i % 2 else 0o644, uid=1000 + u, gid=1000 + u,
            mtime=1700000000 * 10**9 + rnd.randint(0, 10**15))
    os.chown(f"{root}/home/user{u}", 1000 + u, 1000 + u)
    os.chmod(f"{root}/home/user{u}", 0o750)
# Hardlinks across directories, on / and on /home.
os.makedirs(f"{root}/usr/share/links", exist_ok=True)
os.makedirs(f"{root}/var/cache/hard", exist_ok=True)
os.link(f"{root}/srv/data/d00/f001", f"{root}/usr/share/links/a-link")
os.link(f"{root}/srv/data/d00/f001", f"{root}/var/cache/hard/third-link")
os.link(f"{root}/srv/data/d07/f003", f"{root}/srv/data/d31/f003-link")
os.link(f"{root}/home/user1/doc01.txt", f"{root}/home/user2/shared-from-user1")
# Symlinks: relative, absolute, dangling, to a directory.
os.symlink("../../srv/data/d01/f002", f"{root}/usr/share/rel-link")
os.symlink("/usr/share/zoneinfo", f"{root}/etc/zoneinfo-abs")
os.symlink("/nonexistent/target", f"{root}/etc/dangling")
os.symlink("data/d02", f"{root}/srv/dir-link")
os.symlink("../user1/doc02.txt", f"{root}/home/user3/link-to-user1")
# xattrs: user.* on files and a directory (both filesystems), a POSIX ACL, a capability.
os.setxattr(f"{root}/srv/data/d03/f004", "user.kaclone.origin", b"golden")
os.setxattr(f"{root}/srv/data/d03/f004", "user.kaclone.binary", bytes(range(32)))
os.setxattr(f"{root}/srv/data", "user.kaclone.dir", b"a directory's xattr")
os.setxattr(f"{root}/home/user4/doc04.txt", "user.mime_type", b"text/plain")
acl = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", t, p, i) for t, p, i in
      [(1, 6, 0xffffffff), (2, 4, 1000), (4, 4, 0xffffffff), (0x10, 4, 0xffffffff), (0x20, 0, 0xffffffff)])
os.setxattr(f"{root}/srv/data/d05/f006", "system.posix_acl_access", acl)
put("usr/bin/pinger", 5000, mode=0o755)
# VFS_CAP_REVISION_2 with the effective bit, cap_net_raw (13) permitted: setcap cap_net_raw+ep.
os.setxattr(f"{root}/usr/bin/pinger", "security.capability", struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0))
# Special modes, a fifo, a device node, unicode and long names, empty file and directory.
put("usr/bin/suid-tool", 3000, mode=0o4755)
put("usr/bin/sgid-tool", 3000, mode=0o2755, gid=100)
os.makedirs(f"{root}/srv/shared", exist_ok=True); os.chmod(f"{root}/srv/shared", 0o2775)
os.makedirs(f"{root}/srv/drop", exist_ok=True); os.chmod(f"{root}/srv/drop", 0o1733)
os.mkfifo(f"{root}/srv/fifo", 0o620)
os.mknod(f"{root}/srv/null-device", 0o20640, os.makedev(1, 3))
put("srv/grüße-ünïcødé ✓", 42)
put("srv/" + "n" * 200, 7)
put("srv/empty", 0)
os.makedirs(f"{root}/srv/empty-dir", exist_ok=True)
# Sparse files: 64 MiB with three 4 KiB blocks of data on /, 32 MiB with two on /home.
def sparse(rel, size, offsets):
    with open(f"{root}/{rel}", "wb") as f:
        f.truncate(size)
        for off in offsets:
            f.seek(off)
            f.write(b"sparse block at %d\n" % off * 200)
sparse("var/sparse.img", 64 << 20, [0, 20 << 20, (64 << 20) - 4096])
sparse("home/user1/disk.img", 32 << 20, [4096, 16 << 20])
# Directories' times last, deepest first, for a fixed part of the tree.
for d, dirs, files in sorted(os.walk(f"{root}/srv"), key=lambda w: -w[0].count("/")):
    t = 1650000000 * 10**9 + rnd.randint(0, 10**9)
    os.utime(d, ns=(t, t))
EOF
    # What the clones must match, listed before anything is served: a server that changed the
    # golden tree would show too.
    _golden_facts
}

# Paths below the root that the clone's fixups change (compared apart, or only by existence),
# and directories whose mtime changes because a file in them is written, renamed or removed.
_fixed_up=(etc/fstab etc/machine-id var/lib/dbus/machine-id 'etc/ssh/ssh_host_*' etc/hostname
    etc/hosts var/lib/kaclone-marker var/lib/kaclone 'var/lib/dhcp/*.leases'
    etc/udev/rules.d/70-persistent-net.rules 'tmp/*')
_touched_dirs=(etc etc/ssh var/lib var/lib/dbus var/lib/dhcp etc/udev/rules.d)

# tree_list DIR: the listing of the tree at DIR, as check_clone compares it.
tree_list() {
    local args=("$1" --links) p
    for p in "${_fixed_up[@]}"; do args+=(--ignore "$p"); done
    for p in "${_touched_dirs[@]}"; do args+=(--no-mtime "$p"); done
    python3 "$KACLONE_SRC/tests/e2e/tree_listing.py" "${args[@]}"
}

# sfdisk's dump without what differs from disk to disk (label id, device, partition uuids) and
# with partitions named by number.
table_of() {
    sfdisk --dump "$1" | grep -vE '^(label-id|device):' |
        sed -E 's#^/dev/[^ ]*[^0-9]([0-9]+) *:#part\1 :#; s/, *uuid=[^,]*//'
}

# The golden disk's facts check_clone needs, computed once.
_golden_facts() {
    [ -z "${golden_list:-}" ] || return 0
    local n line
    golden_parts=()
    while read -r line; do
        [[ "$line" =~ ^part([0-9]+) ]] && golden_parts+=("${BASH_REMATCH[1]}")
    done < <(table_of "$golden_dev")
    declare -gA golden_uuid=() golden_type=() golden_mount=()
    for n in "${golden_parts[@]}"; do
        golden_type[$n]=$(probe TYPE "$(part "$golden_dev" "$n")")
        golden_uuid[$n]=$(probe UUID "$(part "$golden_dev" "$n")")
    done
    # Mount points of the golden partitions below $golden_mnt, relative ("" for the root).
    local target source
    while read -r target source; do
        [ "$target" = "$golden_mnt" ] || [[ "$target" == "$golden_mnt/"* ]] || continue
        [[ "$source" =~ ^${golden_dev}p([0-9]+)$ ]] || continue
        golden_mount[${BASH_REMATCH[1]}]=${target#"$golden_mnt"}
    done < <(findmnt -rn -o TARGET,SOURCE)
    [[ " ${golden_mount[*]} " == *"  "* ]] || fail "no partition of $golden_dev is mounted at $golden_mnt"
    golden_table=$(table_of "$golden_dev")
    golden_list=$work/golden.list
    sync
    tree_list "$golden_mnt" >"$golden_list"
}

check_clone_reset() { declare -gA _seen=(); }

# The golden partitions that are mounted, parents first.
_mount_order() {
    local k
    for k in "${!golden_mount[@]}"; do echo "${golden_mount[$k]} $k"; done | sort | cut -d' ' -f2
}

# _seen_once WHAT VALUE: fail if VALUE was seen before (on another clone or the golden disk).
_seen_once() {
    [ -z "${_seen[$2]:-}" ] || fail "$1: $2 is also ${_seen[$2]}"
    _seen[$2]=$1
}

check_clone() {
    local name=$1 dev=$2 hostname=$3 marker=$4 n mnt rel
    mnt=$work/check-$name
    declare -p _seen >/dev/null 2>&1 || check_clone_reset
    _golden_facts
    for n in "${golden_parts[@]}"; do
        [ -z "${golden_uuid[$n]}" ] || _seen[${golden_uuid[$n]}]="the golden disk's partition $n"
    done
    partitions_visible "$dev" "${golden_parts[@]}"

    # The table: the same partitions, types, flags, starts and sizes.
    local table
    table=$(table_of "$dev")
    [ "$table" == "$golden_table" ] || fail "$name: its partition table differs from the golden one:
$(diff <(echo "$golden_table") <(echo "$table"))"

    # Filesystems: the same types, new UUIDs.
    declare -A uuid=()
    for n in "${golden_parts[@]}"; do
        expect_eq "$name: filesystem type of partition $n" "$(probe TYPE "$(part "$dev" "$n")")" "${golden_type[$n]}"
        [ -n "${golden_uuid[$n]}" ] || continue
        uuid[$n]=$(probe UUID "$(part "$dev" "$n")")
        [ -n "${uuid[$n]}" ] || fail "$name: partition $n (${golden_type[$n]}) has no UUID"
        _seen_once "$name's partition $n" "${uuid[$n]}"
    done

    # Mount it as the golden disk is mounted, read-only: a clean filesystem mounts as it is.
    for n in $(_mount_order); do
        mkdir -p "$mnt${golden_mount[$n]}"
        mount -o ro "$(part "$dev" "$n")" "$mnt${golden_mount[$n]}" ||
            fail "$name: cannot mount partition $n read-only (not unmounted cleanly?)"
    done

    # fstab: the golden one with each golden UUID replaced by the clone's; mode and owner kept.
    local want_fstab
    want_fstab=$(cat "$golden_mnt/etc/fstab")
    for n in "${!uuid[@]}"; do want_fstab=${want_fstab//${golden_uuid[$n]}/${uuid[$n]}}; done
    expect_eq "$name: etc/fstab" "$(cat "$mnt/etc/fstab")" "$want_fstab"
    for rel in etc/fstab etc/hostname etc/hosts etc/machine-id; do
        expect_eq "$name: mode and owner of $rel" "$(stat -c '%A %u %g' "$mnt/$rel")" \
            "$(stat -c '%A %u %g' "$golden_mnt/$rel")"
    done

    # A fresh machine-id: emptied (systemd makes one on first boot) or a new one; dbus's follows.
    local id
    id=$(cat "$mnt/etc/machine-id")
    [ "$id" != "$(cat "$golden_mnt/etc/machine-id")" ] || fail "$name: etc/machine-id is still the golden one"
    [ -z "$id" ] || [[ "$id" =~ ^[0-9a-f]{32}$ ]] || fail "$name: etc/machine-id is neither empty nor an id: '$id'"
    [ -z "$id" ] || _seen_once "$name's machine-id" "$id"
    if [ -L "$mnt/var/lib/dbus/machine-id" ]; then
        expect_eq "$name: var/lib/dbus/machine-id points to" "$(readlink "$mnt/var/lib/dbus/machine-id")" /etc/machine-id
    elif [ -e "$mnt/var/lib/dbus/machine-id" ]; then
        cmp -s "$mnt/var/lib/dbus/machine-id" "$golden_mnt/var/lib/dbus/machine-id" &&
            fail "$name: var/lib/dbus/machine-id is still the golden one"
    fi

    # New SSH host keys: every golden one replaced, none seen anywhere else.
    local key
    for key in "$golden_mnt"/etc/ssh/ssh_host_*_key "$golden_mnt"/etc/ssh/ssh_host_*_key.pub; do
        rel=${key#"$golden_mnt"/}
        [ -f "$mnt/$rel" ] || fail "$name: no $rel (the host keys were not regenerated)"
        cmp -s "$key" "$mnt/$rel" && fail "$name: $rel is still the golden one"
        _seen_once "$name's $rel" "$(sha256sum <"$mnt/$rel" | cut -d' ' -f1)"
    done
    expect_eq "$name: mode of etc/ssh/ssh_host_ed25519_key" "$(stat -c %a "$mnt/etc/ssh/ssh_host_ed25519_key")" 600

    # Host name and hosts.
    if [ -n "$hostname" ]; then
        expect_eq "$name: etc/hostname" "$(cat "$mnt/etc/hostname")" "$hostname"
        expect_eq "$name: etc/hosts" "$(cat "$mnt/etc/hosts")" \
            "$(sed "s/golden\.lab\tgolden/$hostname.lab\t$hostname/" "$golden_mnt/etc/hosts")"
    else
        expect_eq "$name: etc/hostname (no host name given)" "$(cat "$mnt/etc/hostname")" "$(cat "$golden_mnt/etc/hostname")"
        expect_eq "$name: etc/hosts (no host name given)" "$(cat "$mnt/etc/hosts")" "$(cat "$golden_mnt/etc/hosts")"
    fi

    # The hook ran, chrooted, with /proc and /dev.
    [ -f "$mnt/var/lib/kaclone-marker" ] || fail "$name: no var/lib/kaclone-marker: the hook did not run"
    expect_eq "$name: the hook's marker" "$(cat "$mnt/var/lib/kaclone-marker")" "$marker"

    # The network step: the net rule and the leases are gone, the rest of their directories kept.
    [ ! -e "$mnt/etc/udev/rules.d/70-persistent-net.rules" ] || fail "$name: the persistent net rule is still there"
    expect_eq "$name: leases left" "$(cd "$mnt/var/lib/dhcp" && find . -name '*.leases')" ""

    # /tmp: excluded, so empty, mode 1777.
    expect_eq "$name: tmp" "$(stat -c '%a %u %g' "$mnt/tmp") $(ls -A "$mnt/tmp" | tr '\n' ' ')" "1777 0 0 "

    # Sparse files stay sparse (64 and 32 MiB files with a few 4 KiB blocks of data).
    local f blocks
    for f in var/sparse.img home/user1/disk.img; do
        blocks=$(stat -c '%b*%B' "$mnt/$f")
        [ $((blocks)) -le $((1 << 20)) ] || fail "$name: $f takes $((blocks)) bytes on disk, not under 1 MiB: not sparse"
    done

    # Everything else: identical.
    local list=${run:-$work}/$name.list
    tree_list "$mnt" >"$list"
    diff -u "$golden_list" "$list" >"$list.diff" || fail "$name: its tree differs from the golden one (- golden, + clone; full diff in $list.diff):
$(head -n 40 "$list.diff")"
    rm -f "$list" "$list.diff"

    # Unmount, deepest first.
    for n in $(_mount_order | tac); do
        umount "$mnt${golden_mount[$n]}" || fail "$name: cannot unmount partition $n"
    done
    rm -rf "$mnt"
}

blank_disks() {
    local n=$1 i
    for i in "${!node_disk[@]}"; do detach_disk "${node_disk[i]}"; done
    node_disk=()
    for ((i = 1; i <= n; i++)); do
        attach_disk "node_disk[$i]" "$data/node$i.img" "$golden_size"
    done
}

# The clone of node I gets the host name soak-I; the --hostnames file lists the nodes backwards,
# so NODE_INDEX (the 0-based position of the node's line) is N - I.
clone_round() {
    local n=$1 session=$2 secs=$3 i line logs log
    new_run "$session"
    logs=$run/logs
    for ((i = n; i >= 1; i--)); do echo "$(node_ip "$i") soak-$i"; done >"$run/hostnames"
    start_serve "$secs" --session "$session" --nodes "$n" --disk "$golden_dev" --root "$golden_mnt" \
        --exclude /tmp --bootloader none --hostnames "$run/hostnames" --logs "$logs" --json
    for ((i = 1; i <= n; i++)); do
        mkdir -p "$run/target$i"
        start_join "$i" "$secs" --session "$session" --server "$(node_ip 0)" --disk "${node_disk[i]}" \
            --yes --target "$run/target$i"
    done
    wait_session "$n"
    for ((i = 1; i <= n; i++)); do
        expect_rc "node $i (join --disk ${node_disk[i]})" "${join_rc[i]}" 0 "$run/join$i.err"
    done
    expect_rc "serve --disk" "$serve_rc" 0 "$run/serve.err"
    check_no_process $(seq 0 "$n")
    # One log per node, named HOST-ADDRESS (all nodes share this host's name), with the hook's
    # output, ending when the node is done.
    expect_eq "logs in --logs $logs" "$(find "$logs" -maxdepth 1 -name '*.log' -type f | wc -l)" "$n"
    for ((i = 1; i <= n; i++)); do
        log=$logs/$(uname -n)-$(node_ip "$i").log
        [ -f "$log" ] || fail "no log of node $i ($log); the logs: $(ls "$logs")"
        grep -qxF "fixup: hooks: 50-marker: marker written for soak-$i" "$log" ||
            fail "node $i's log $log has no line of the hook's output"
        [[ "$(tail -n 1 "$log")" == "done: "* ]] || fail "node $i's log $log does not end with done: (but '$(tail -n 1 "$log")')"
    done
    line=$(grep '"event":"summary"' "$run/serve.out" | tail -n 1)
    [ -n "$line" ] || fail "no summary event in serve's JSON output:
$(tail -n 5 "$run/serve.out")"
    expect_eq "serve's summary: nodes ok" "$(json_field "$line" ok)" "$n"
    check_clone_reset
    for ((i = 1; i <= n; i++)); do
        check_clone "$session-node$i" "${node_disk[i]}" "soak-$i" "$(golden_marker "soak-$i" $((n - i)))"
    done
}
