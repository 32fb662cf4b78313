#!/usr/bin/env bash
# Disk layout on loop devices backed by sparse files: `kaclone layout` writes real dos and gpt
# tables, filesystems and mounts (checked with sfdisk --json, blkid and findmnt), `kaclone desc`
# describes each disk back to its description, and every refusal (mounted, swap, no --yes, too
# small, missing mkfs) and --dry-run leave the disk byte-identical.
set -euo pipefail

source "$(dirname "$0")/private_mounts.sh"
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/disk_lib.sh"

require_loop_devices
for tool in sfdisk blkid findmnt jq mkfs.ext4 mkfs.xfs mkfs.vfat mkfs.btrfs mkswap; do
    command -v "$tool" >/dev/null || fail "$tool is missing (scripts/setup installs it)"
done

cd "$work"
on_exit disks_cleanup

digest() { sha256sum <"$1" | cut -d' ' -f1; }

# The partitions as sfdisk reads them: "node start size type [attrs]" in 512-byte sectors.
table_of() {
    sfdisk --json "$1" | jq -r '.partitiontable.partitions[] |
        "\(.node) \(.start) \(.size) \(.type)" + (if .attrs then " " + .attrs else "" end)'
}
label_of() { sfdisk --json "$1" | jq -r .partitiontable.label; }
# blkid -p probes the device itself, never blkid's cache (which may be older than the last mkfs).
probe() { blkid -p -o value -s "$1" "$2"; }
fs_of() { probe TYPE "$1"; }
uuid_of() { probe UUID "$1"; }
mib() { echo $(($1 * 2048)); }  # MiB -> 512-byte sectors

# expect_distinct WHAT VALUE...: no VALUE twice.
expect_distinct() {
    local what=$1 dups
    shift
    dups=$(printf '%s\n' "$@" | sort | uniq -d)
    expect_eq "$what: values seen twice" "$dups" ""
}
# expect_refused WHAT RC MESSAGE CMD...: CMD exits RC with stderr MESSAGE, and disk3 is as it was.
expect_refused() {
    local what=$1 want_rc=$2 want_err=$3
    shift 3
    run_capture "$@"
    expect_eq "$what: exit code" "$rc" "$want_rc"
    expect_eq "$what: message" "$err" "$want_err"
    expect_eq "$what: disk unchanged" "$(digest "$work/disk3")" "$before"
}
# expect_same_file WHAT GOT WANT: byte for byte, trailing newline included.
expect_same_file() { cmp -s "$2" "$3" || fail "$1: $2 differs from $3: $(diff "$2" "$3")"; }

# ---- case 1: the old 4-line example, scaled to a 4 GiB disk, with columns ----
attach_disk d1 "$work/disk1" 4G
cat >old.desc <<'EOF'
linux 2000 fs=ext4 mount=/
extended fill
logical swap 500 fs=swap
logical linux fill fs=xfs mount=/data
EOF
plan1="$d1: 4 GiB, 512-byte sectors, label: dos
NUMBER  START     SIZE      TYPE      FS    MOUNT  LABEL  FLAGS
1       1 MiB     2000 MiB  linux     ext4  /      -      -
2       2001 MiB  2095 MiB  extended  -     -      -      -
5       2002 MiB  500 MiB   swap      swap  -      -      -
6       2503 MiB  1593 MiB  linux     xfs   /data  -      -"

run_capture "$KACLONE" layout --desc old.desc "$d1" --target "$work/t1" --dry-run
expect_eq "dos --dry-run exit code" "$rc" 0
expect_eq "dos --dry-run output" "$out" "$plan1
dry run: nothing written to $d1"
expect_eq "dos --dry-run wrote no table" "$(sfdisk --json "$d1" 2>/dev/null || true)" ""

run_capture "$KACLONE" layout --desc old.desc "$d1" --target "$work/t1" --yes
expect_eq "dos layout exit code (stderr: $err)" "$rc" 0
# The kernel rereads the table, or (no dos/gpt parser in it) gets the partitions by BLKPG; udev
# makes the nodes, or layout does (mknod) where there is none.
kernel_step=$(sed -n 8p <<<"$out")
case "$kernel_step" in
    "kernel reread the partition table" | "kernel partitions added with BLKPG: 1 2 5 6") ;;
    *) fail "dos layout: unexpected kernel step: $kernel_step" ;;
esac
expect_eq "dos layout steps" "$(tail -n +7 <<<"$out" | grep -v '^created /dev/.* with mknod')" \
"partition table written (dos, 4 partitions)
$kernel_step
mkfs.ext4 ${d1}p1 (/)
mkswap ${d1}p5
mkfs.xfs ${d1}p6 (/data)
mount ${d1}p1 on $work/t1 (/)
mount ${d1}p6 on $work/t1/data (/data)
done: $d1 laid out, mounted below $work/t1"
expect_eq "dos plan printed first" "$(head -n 6 <<<"$out")" "$plan1"

expect_eq "dos label" "$(label_of "$d1")" dos
expect_eq "dos partitions (sfdisk)" "$(table_of "$d1")" \
"${d1}p1 $(mib 1) $(mib 2000) 83
${d1}p2 $(mib 2001) $(mib 2095) 5
${d1}p5 $(mib 2002) $(mib 500) 82
${d1}p6 $(mib 2503) $(mib 1593) 83"
expect_eq "dos fs of p1" "$(fs_of "${d1}p1")" ext4
expect_eq "dos fs of p5" "$(fs_of "${d1}p5")" swap
expect_eq "dos fs of p6" "$(fs_of "${d1}p6")" xfs
uuids1=("$(uuid_of "${d1}p1")" "$(uuid_of "${d1}p5")" "$(uuid_of "${d1}p6")")
expect_distinct "dos UUIDs" "${uuids1[@]}"
expect_eq "dos mount of /" "$(findmnt -rn -M "$work/t1" -o SOURCE,FSTYPE)" "${d1}p1 ext4"
expect_eq "dos mount of /data" "$(findmnt -rn -M "$work/t1/data" -o SOURCE,FSTYPE)" "${d1}p6 xfs"

# desc with --fill-last and the target as root gives the input back byte for byte; plain desc
# gives exact sizes and the mount points as the running system has them.
run_capture "$KACLONE" desc "$d1" --fill-last --target "$work/t1"
expect_eq "dos desc --fill-last --target exit code ($err)" "$rc" 0
expect_same_file "dos desc round trip" "$work/out" old.desc
expect_eq "dos desc notes" "$err" ""
run_capture "$KACLONE" desc "$d1"
expect_eq "dos desc exact" "$out" "linux 2000 fs=ext4 mount=$work/t1
extended 2095
logical swap 500 fs=swap
logical linux 1593 fs=xfs mount=$work/t1/data"

# Unmounted, the mount points come from the fstab of the system under --target.
umount "$work/t1/data" "$work/t1"
mkdir -p "$work/root1/etc"
cat >"$work/root1/etc/fstab" <<EOF
# the clone's fstab
UUID=${uuids1[0]^^}  /      ext4  defaults  0 1
UUID=${uuids1[1]}    none   swap  sw        0 0
PARTUUID=$(probe PART_ENTRY_UUID "${d1}p6")  /data  xfs  defaults  0 2
EOF
run_capture "$KACLONE" desc "$d1" --fill-last --target "$work/root1"
expect_same_file "dos desc from fstab" "$work/out" old.desc

# The backing file is a disk image: libfdisk reads its table, libblkid probes each partition at
# its offset, and the fstab gives the mount points.
run_capture "$KACLONE" desc "$work/disk1" --fill-last --target "$work/root1"
expect_same_file "dos desc of the image file" "$work/out" old.desc

# A second layout of the same disk makes new filesystems: new UUIDs.
run_capture "$KACLONE" layout --desc old.desc "$d1" --target "$work/t1" --yes
expect_eq "dos second layout exit code ($err)" "$rc" 0
expect_distinct "dos UUIDs after a second layout" "${uuids1[@]}" "$(uuid_of "${d1}p1")" "$(uuid_of "${d1}p5")" "$(uuid_of "${d1}p6")"
umount "$work/t1/data" "$work/t1"

# ---- case 2: gpt with units, labels, flags; ESP (vfat), ext4 root, btrfs home ----
attach_disk d2 "$work/disk2" 4G
cat >gpt.desc <<'EOF'
label: gpt
# sizes with units print back in MiB
esp 256M fs=vfat mount=/boot/efi label=EFI flags=esp
linux 2G fs=ext4 mount=/ label=root flags=boot
linux fill fs=btrfs mount=/home label=home
EOF
canonical="label: gpt
esp 256 fs=vfat mount=/boot/efi label=EFI flags=esp
linux 2048 fs=ext4 mount=/ label=root flags=boot
linux fill fs=btrfs mount=/home label=home"
run_capture "$KACLONE" layout --desc gpt.desc "$d2" --target "$work/t2" --dry-run
if [ "$rc" -ne 0 ]; then
    # A kernel without vfat (and no module for it) cannot mount the ESP; layout refuses that
    # up front. Then the ESP is made but not mounted.
    expect_eq "gpt refusal without vfat" "$err" \
        "kaclone layout: gpt.desc:3 (fs=vfat mount=/boot/efi): the running kernel cannot mount this filesystem (not in /proc/filesystems, no module)"
    echo "NOTE: this kernel cannot mount vfat: the ESP is formatted but not mounted"
    sed -i 's| mount=/boot/efi||' gpt.desc
    canonical=${canonical/ mount=\/boot\/efi/}
fi
# A relative --target is below the current directory.
run_capture "$KACLONE" layout --desc gpt.desc "$d2" --target t2 --yes
expect_eq "gpt layout exit code ($err)" "$rc" 0
expect_eq "gpt label" "$(label_of "$d2")" gpt
expect_eq "gpt partitions (sfdisk)" "$(table_of "$d2")" \
"${d2}p1 $(mib 1) $(mib 256) C12A7328-F81F-11D2-BA4B-00A0C93EC93B
${d2}p2 $(mib 257) $(mib 2048) 0FC63DAF-8483-4772-8E79-3D69D8477DE4 LegacyBIOSBootable
${d2}p3 $(mib 2305) $(mib 1790) 0FC63DAF-8483-4772-8E79-3D69D8477DE4"
expect_eq "gpt fs of p1" "$(fs_of "${d2}p1")" vfat
expect_eq "gpt fs of p2" "$(fs_of "${d2}p2")" ext4
expect_eq "gpt fs of p3" "$(fs_of "${d2}p3")" btrfs
expect_eq "gpt labels" "$(probe LABEL "${d2}p1") $(probe LABEL "${d2}p2") $(probe LABEL "${d2}p3")" "EFI root home"
expect_distinct "gpt UUIDs" "$(uuid_of "${d2}p1")" "$(uuid_of "${d2}p2")" "$(uuid_of "${d2}p3")" "${uuids1[@]}"
expect_eq "gpt mount of /" "$(findmnt -rn -M "$work/t2" -o SOURCE,FSTYPE)" "${d2}p2 ext4"
expect_eq "gpt mount of /home" "$(findmnt -rn -M "$work/t2/home" -o SOURCE,FSTYPE)" "${d2}p3 btrfs"
if grep -q mount=/boot/efi gpt.desc; then
    expect_eq "gpt mount of /boot/efi" "$(findmnt -rn -M "$work/t2/boot/efi" -o SOURCE,FSTYPE)" "${d2}p1 vfat"
fi
run_capture "$KACLONE" desc "$d2" --fill-last --target t2/
expect_eq "gpt desc exit code ($err)" "$rc" 0
expect_eq "gpt desc round trip (canonical form)" "$out" "$canonical"

# ---- case 3: no udev and no devtmpfs (a private /dev in a mount namespace): layout waits for
# the partition nodes, then makes them itself from sysfs ----
no_udev_case() {
    attach_disk d4 "$work/disk4" 256M
    printf 'linux 64 fs=ext4 mount=/\nlinux fill fs=ext4 mount=/srv\n' >nodev.desc
    cat >nodev.sh <<'EOF'
set -eu
mount -t tmpfs kaclone-test-dev /dev
mknod -m 666 /dev/null c 1 3
mknod -m 600 "$disk" b "$disk_major" "$disk_minor"
"$KACLONE" layout --desc nodev.desc "$disk" --target "$work/t4" --yes
findmnt -rn -o TARGET,SOURCE,FSTYPE | grep "^$work/t4" | sort
"$KACLONE" desc "$disk" --target "$work/t4"
EOF
    local major minor name=${d4#/dev/}
    IFS=: read -r major minor <"/sys/class/block/$name/dev"
    # The namespace's mounts (its /dev, the layout's) end with it.
    set +e
    disk=$d4 disk_major=$major disk_minor=$minor work=$work \
        unshare --mount --propagation private bash nodev.sh >"$work/nodev.out" 2>"$work/nodev.err"
    rc=$?
    set -e
    out=$(cat "$work/nodev.out")
    expect_eq "no udev: exit code ($(cat "$work/nodev.err"))" "$rc" 0
    expect_eq "no udev: steps" "$(tail -n +5 <<<"$out")" "partition table written (dos, 2 partitions)
kernel partitions added with BLKPG: 1 2
created ${d4}p1 ($(cat "/sys/class/block/${name}p1/dev")) with mknod: no udev made it within 5 s
created ${d4}p2 ($(cat "/sys/class/block/${name}p2/dev")) with mknod: no udev made it within 5 s
mkfs.ext4 ${d4}p1 (/)
mkfs.ext4 ${d4}p2 (/srv)
mount ${d4}p1 on $work/t4 (/)
mount ${d4}p2 on $work/t4/srv (/srv)
done: $d4 laid out, mounted below $work/t4
$work/t4 ${d4}p1 ext4
$work/t4/srv ${d4}p2 ext4
linux 64 fs=ext4 mount=/
linux 191 fs=ext4 mount=/srv"
    expect_eq "no udev: fs of p2" "$(fs_of "${d4}p2")" ext4
}
if unshare --mount --propagation private true 2>/dev/null; then
    no_udev_case
else
    echo "NOTE: cannot make a mount namespace here: the mknod path is not exercised"
fi

# ---- case 4: refusals, each leaving the disk byte-identical ----
attach_disk d3 "$work/disk3" 64M
printf 'linux 32 fs=ext4\nswap fill fs=swap\n' >small.desc
run_capture "$KACLONE" layout --desc small.desc "$d3" --yes
expect_eq "small layout exit code ($err)" "$rc" 0
printf 'linux 8 fs=ext4 mount=/\nlinux fill fs=ext4 mount=/srv\n' >other.desc
before=$(digest "$work/disk3")

# a mounted partition (read-only, so that the mount itself writes nothing)
mkdir -p "$work/ro"
mount -o ro "${d3}p1" "$work/ro"
run_capture "$KACLONE" layout --desc other.desc "$d3" --yes
expect_eq "mounted: exit code" "$rc" 1
expect_eq "mounted: message" "$err" \
    "kaclone layout: $d3 (${d3}p1 is mounted on $work/ro): disk in use; unmount its filesystems, swapoff its swap and stop what holds it first"
# join --sink of a device with a mounted partition, or of the mounted partition itself: refused
# before any server is asked (none is: the session has no server, loopback only)
for dev in "$d3" "${d3}p1"; do
    expect_refused "join --sink $dev, mounted" 1 \
        "kaclone join: $dev is in use (mounted, swap, or held by md, LVM or another program); nothing was written: Device or resource busy" \
        "$KACLONE" join --session layout-nobody --server 127.0.0.1 --retries 1 --sink "$dev" --yes
done
# join --disk: a mounted disk and a partition are refused before the node joins
expect_refused "join --disk $d3, mounted" 1 \
    "kaclone join: $d3 (${d3}p1 is mounted on $work/ro): disk in use; unmount its filesystems, swapoff its swap and stop what holds it first" \
    "$KACLONE" join --session layout-nobody --server 127.0.0.1 --retries 1 --disk "$d3" --yes --target "$work/never"
expect_refused "join --disk ${d3}p1" 1 "kaclone join: ${d3}p1 (a partition; give the whole disk): not a whole-disk block device" \
    "$KACLONE" join --session layout-nobody --server 127.0.0.1 --retries 1 --disk "${d3}p1" --yes --target "$work/never"
umount "$work/ro"
expect_eq "mounted: disk unchanged" "$(digest "$work/disk3")" "$before"
# ... and one that finds no server says only that, and leaves no --target behind
expect_refused "join --disk, no server" 1 \
    "kaclone join: no server for session 'layout-nobody' answered after 1 attempt (asked 127.0.0.1): no server answered" \
    "$KACLONE" join --session layout-nobody --server 127.0.0.1 --retries 1 --disk "$d3" --yes --target "$work/never"
expect_eq "join --disk, no server: --target not made" "$(ls -d "$work/never" 2>&1)" "ls: cannot access '$work/never': No such file or directory"

expect_refused "join --sink device without --yes" 2 "kaclone join: --sink $d3 is a block device and is overwritten: confirm with --yes
Run 'kaclone join --help' for usage." "$KACLONE" join --session layout-nobody --server 127.0.0.1 --retries 1 --sink "$d3"

# a description without partitions would only erase the disk
printf '# nothing yet\nlabel: gpt\n' >empty.desc
expect_refused "no partitions" 1 \
    "kaclone layout: empty.desc: no partitions: laying it out would only erase the disk (expected lines [logical] TYPE SIZE [key=value]...)" \
    "$KACLONE" layout --desc empty.desc "$d3" --yes

# --target that is a file: refused before the disk is touched, not after
: >"$work/not-a-dir"
expect_refused "--target a file" 1 "kaclone layout: --target $work/not-a-dir: Not a directory" \
    "$KACLONE" layout --desc other.desc "$d3" --yes --target "$work/not-a-dir"

# a partition in use as swap
if swapon "${d3}p2" 2>/dev/null; then
    run_capture "$KACLONE" layout --desc other.desc "$d3" --yes
    swapoff "${d3}p2"
    expect_eq "swap: exit code" "$rc" 1
    expect_eq "swap: message" "$err" \
        "kaclone layout: $d3 (${d3}p2 is in use as swap): disk in use; unmount its filesystems, swapoff its swap and stop what holds it first"
    expect_eq "swap: disk unchanged" "$(digest "$work/disk3")" "$before"
else
    echo "NOTE: swapon is not possible here: the swap refusal is not exercised"
fi

# no --yes and no terminal
run_capture "$KACLONE" layout --desc other.desc "$d3" </dev/null
expect_eq "no --yes: exit code" "$rc" 1
expect_eq "no --yes: message" "$err" "kaclone layout: refusing to erase $d3 without --yes (no terminal to ask on)"
expect_eq "no --yes: disk unchanged" "$(digest "$work/disk3")" "$before"

# a terminal, and an answer that is not "yes"
if command -v script >/dev/null; then
    set +e
    printf 'y\n' | script -qec "'$KACLONE' layout --desc other.desc '$d3'" /dev/null >"$work/tty" 2>&1
    rc=$?
    set -e
    expect_eq "tty answer y: exit code" "$rc" 1
    grep -qF "Type yes to erase $d3 (64 MiB, loop device on $work/disk3): " "$work/tty" ||
        fail "tty: no prompt in: $(cat "$work/tty")"
    grep -qF "kaclone layout: not confirmed; $d3 left as it was" "$work/tty" ||
        fail "tty: no refusal in: $(cat "$work/tty")"
    expect_eq "tty answer y: disk unchanged" "$(digest "$work/disk3")" "$before"
fi

# too small for the fixed sizes
printf 'linux 100 fs=ext4\nlinux fill\n' >big.desc
expect_refused "too small" 1 \
    "kaclone layout: big.desc:1 (partitions need 102 MiB but the disk $d3 has 64 MiB): partition does not fit on the disk" \
    "$KACLONE" layout --desc big.desc "$d3" --yes

# an mkfs that is not installed: PATH without mkfs.xfs
mkdir -p "$work/bin"
ln -s "$(command -v mkfs.ext4)" "$work/bin/mkfs.ext4"
printf 'linux 16 fs=ext4\nlinux fill fs=xfs\n' >xfs.desc
run_capture env PATH="$work/bin" "$KACLONE" layout --desc xfs.desc "$d3" --yes
expect_eq "missing mkfs: exit code" "$rc" 1
expect_eq "missing mkfs: message" "$err" \
    "kaclone layout: xfs.desc:2 (fs=xfs needs mkfs.xfs from the Debian package xfsprogs): mkfs program not found in PATH"
expect_eq "missing mkfs: disk unchanged" "$(digest "$work/disk3")" "$before"

# a description error names file and line
printf 'linux 16\nbogus 5\n' >bad.desc
run_capture "$KACLONE" layout --desc bad.desc "$d3" --yes
expect_eq "bad desc: exit code" "$rc" 1
expect_eq "bad desc: message" "$err" \
    "kaclone layout: bad.desc:2: unknown partition type (use linux, swap, extended or typeXX; with label: gpt use linux, swap, esp, bios or a type GUID)"

# --dry-run prints the plan and writes nothing
run_capture "$KACLONE" layout --desc other.desc "$d3" --dry-run
expect_eq "dry run: exit code ($err)" "$rc" 0
expect_eq "dry run: last line" "$(tail -n 1 <<<"$out")" "dry run: nothing written to $d3"
expect_eq "dry run: disk unchanged" "$(digest "$work/disk3")" "$before"

# the description of the untouched disk is still the one it was laid out with
run_capture "$KACLONE" desc "$d3" --fill-last
expect_eq "small desc" "$out" "linux 32 fs=ext4
swap fill fs=swap"

# desc of something without a partition table
truncate -s 1M "$work/blank"
run_capture "$KACLONE" desc "$work/blank"
expect_eq "desc blank: exit code" "$rc" 1
expect_eq "desc blank: message" "$err" "kaclone desc: $work/blank: no dos or gpt partition table"

echo "PASS: disk layout"
