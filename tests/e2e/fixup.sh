#!/usr/bin/env bash
# `kaclone fixup` on a loop disk laid out with `kaclone layout` and a synthetic golden root on
# it (fstab in several styles, machine-ids, ssh host keys, net rules, leases): --dry-run changes
# no byte, a run makes exactly the expected changes, a second run changes nothing. In a chroot
# made of this host's dash (and ssh-keygen, with their libraries), stub update-initramfs,
# grub-install, update-grub and hooks record their arguments and whether /proc was mounted;
# failing steps (an immutable leases directory, a failing hook, a failing initramfs tool) are
# reported, the other steps still run, the exit code is 1, and no mount is left behind.
set -euo pipefail

source "$(dirname "$0")/private_mounts.sh"
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/disk_lib.sh"

require_loop_devices
for tool in blkid findmnt sfdisk mkfs.ext4 mkswap chattr ldd sha256sum; do
    command -v "$tool" >/dev/null || fail "$tool is missing (scripts/setup installs it)"
done

cd "$work"
root=$work/root
on_exit disks_cleanup
on_exit "chattr -i '$root/var/lib/dhcp' 2>/dev/null || true"  # runs first: the test makes it immutable

attach_disk disk "$work/disk" 256M

cat >clone.desc <<'EOF'
linux 64 fs=ext4 mount=/
linux 32 fs=ext4 mount=/boot
swap 16 fs=swap
linux fill fs=ext4 mount=/data
EOF
run_capture "$KACLONE" layout --desc clone.desc "$disk" --target "$root" --yes
expect_eq "layout exit code ($err)" "$rc" 0
uuid_of() { blkid -p -o value -s UUID "$1"; }
u1=$(uuid_of "${disk}p1") u2=$(uuid_of "${disk}p2") u3=$(uuid_of "${disk}p3") u4=$(uuid_of "${disk}p4")

# ---- the golden node's files, as the clone got them ----
mkdir -p "$root"/{etc/ssh,etc/initramfs-tools/conf.d,etc/udev/rules.d,var/lib/dbus,var/lib/dhcp,var/lib/NetworkManager,var/lib/dhcpcd,srv/www,dev,proc,sys,run}
cat >"$root/etc/fstab" <<'EOF'
# /etc/fstab: static file system information.
#
# <file system> <mount point>   <type>  <options>       <dump>  <pass>
UUID=0a1b2c3d-0000-4000-8000-000000000001 /               ext4    errors=remount-ro 0       1
/dev/sda2	/boot	ext4	defaults	0	2
LABEL=data  /data  ext4  defaults,noatime  0  2
/dev/disk/by-id/ata-GOLDEN_DISK-part3 none swap sw 0 0
tmpfs /tmp tmpfs defaults,size=1G 0 0
nas:/export/home /home nfs rw,hard 0 0
/srv/www /var/www none bind 0 0
/dev/sdb1 /mnt/backup ext4 noauto 0 0
EOF
echo "RESUME=/dev/sda3" >"$root/etc/initramfs-tools/conf.d/resume"
echo 0123456789abcdef0123456789abcdef >"$root/etc/machine-id"
chmod 444 "$root/etc/machine-id"
echo 0123456789abcdef0123456789abcdef >"$root/var/lib/dbus/machine-id"
echo golden >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tgolden.lab\tgolden\n\n::1\tlocalhost ip6-localhost\n' >"$root/etc/hosts"
echo 'SUBSYSTEM=="net", ATTR{address}=="52:54:00:12:34:56", NAME="eth0"' >"$root/etc/udev/rules.d/70-persistent-net.rules"
echo 'lease { fixed-address 10.0.0.5; }' >"$root/var/lib/dhcp/dhclient.eth0.leases"
echo 'keep me' >"$root/var/lib/dhcp/dhclient.conf.keep"
echo 'lease' >"$root/var/lib/NetworkManager/internal-1234-eth0.lease"
echo 'duid' >"$root/var/lib/dhcpcd/duid"
echo 'golden host key' >"$root/etc/ssh/ssh_host_ed25519_key"
echo 'golden host key pub' >"$root/etc/ssh/ssh_host_ed25519_key.pub"
chmod 600 "$root/etc/ssh/ssh_host_ed25519_key"
echo 'Port 22' >"$root/etc/ssh/sshd_config"
echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"

# install_binary PATH: the host's program at PATH and its libraries, at the same paths in the
# clone, so the chroot can run it.
install_binary() {
    local lib
    mkdir -p "$root$(dirname "$1")"
    cp -L "$1" "$root$1"
    for lib in $(ldd "$1" | grep -o '/[^ ]*'); do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
}
install_binary "$(readlink -f /bin/sh)"
mkdir -p "$root/bin"
[ -e "$root/bin/sh" ] || ln -s "$(readlink -f /bin/sh)" "$root/bin/sh"
ssh_part=no
if command -v ssh-keygen >/dev/null; then
    install_binary "$(command -v ssh-keygen)"
    [ "$(command -v ssh-keygen)" = /usr/bin/ssh-keygen ] && ssh_part=yes
fi
[ "$ssh_part" = yes ] || echo "NOTE: no ssh-keygen in /usr/bin on this host: ssh host keys are not regenerated"

# A digest of every file, symlink and directory of the clone (mode, owner, content).
tree_digest() {
    (cd "$root" && find . -path ./lost+found -prune -o -print0 | sort -z |
        xargs -0 stat -c '%n %f %u %g %s %N' && find . -type f -print0 | sort -z | xargs -0 sha256sum) |
        sha256sum | cut -d' ' -f1
}
# No mount below the clone but the three layout made.
expect_no_chroot_mounts() {
    expect_eq "$1: mounts below the clone" "$(findmnt -rn -o TARGET | grep "^$root" | sort)" \
"$root
$root/boot
$root/data"
}

args=(fixup "$root" --disk "$disk" --hostname n1 --bootloader none --skip initramfs)
facts="facts: ${disk}p1 ext4 UUID=$u1 mounted at /
facts: ${disk}p2 ext4 UUID=$u2 mounted at /boot
facts: ${disk}p3 swap UUID=$u3
facts: ${disk}p4 ext4 UUID=$u4 mounted at /data"
ssh_lines=""
if [ "$ssh_part" = yes ]; then
    ssh_lines="identity: /etc/ssh/ssh_host_ed25519_key: removed
identity: /etc/ssh/ssh_host_ed25519_key.pub: removed
"
fi
changes="$facts
fstab: /etc/fstab: UUID=0a1b2c3d-0000-4000-8000-000000000001 /               ext4    errors=remount-ro 0       1 -> UUID=$u1 /               ext4    errors=remount-ro 0       1
fstab: /etc/fstab: /dev/sda2	/boot	ext4	defaults	0	2 -> UUID=$u2	/boot	ext4	defaults	0	2
fstab: /etc/fstab: LABEL=data  /data  ext4  defaults,noatime  0  2 -> UUID=$u4  /data  ext4  defaults,noatime  0  2
fstab: /etc/fstab: /dev/disk/by-id/ata-GOLDEN_DISK-part3 none swap sw 0 0 -> UUID=$u3 none swap sw 0 0
fstab: /etc/initramfs-tools/conf.d/resume: RESUME=/dev/sda3 -> RESUME=UUID=$u3
identity: /etc/machine-id: 0123456789abcdef0123456789abcdef -> (empty)
identity: /var/lib/dbus/machine-id: 0123456789abcdef0123456789abcdef -> symlink to /etc/machine-id
${ssh_lines}identity: /etc/hostname: golden -> n1
identity: /etc/hosts: 127.0.1.1	golden.lab	golden -> 127.0.1.1	n1.lab	n1"
if [ "$ssh_part" = yes ]; then
    changes+="
identity: RUN /usr/bin/ssh-keygen -A
identity: /var/lib/kaclone/ssh-host-keys: (none) -> root $u1"
else
    changes="${changes/identity: \/etc\/machine-id/identity: ssh host keys skipped: no ssh-keygen in the target (ssh is not installed)
identity: /etc/machine-id}"
fi
changes+="
network: /etc/udev/rules.d/70-persistent-net.rules: removed
network: /var/lib/dhcp/dhclient.eth0.leases: removed
network: /var/lib/dhcpcd/duid: removed
network: /var/lib/NetworkManager/internal-1234-eth0.lease: removed
initramfs: skipped: --skip initramfs
bootloader: skipped: --bootloader none
hooks: skipped: no /etc/kaclone/fixup.d in the target"

# ---- --dry-run: the same report, not a byte changed ----
before=$(tree_digest)
run_capture "$KACLONE" "${args[@]}" --dry-run
expect_eq "dry run exit code ($err)" "$rc" 0
expect_eq "dry run output" "$out" "${changes//: RUN /: would run }
dry run: nothing changed in $root"
expect_eq "dry run: tree unchanged" "$(tree_digest)" "$before"
expect_no_chroot_mounts "dry run"

# ---- the run ----
run_capture "$KACLONE" "${args[@]}"
expect_eq "fixup exit code ($err)" "$rc" 0
expect_eq "fixup output" "$out" "${changes//: RUN /: run }"
expect_eq "fixup stderr" "$err" ""
expect_eq "fstab after" "$(cat "$root/etc/fstab")" "# /etc/fstab: static file system information.
#
# <file system> <mount point>   <type>  <options>       <dump>  <pass>
UUID=$u1 /               ext4    errors=remount-ro 0       1
UUID=$u2	/boot	ext4	defaults	0	2
UUID=$u4  /data  ext4  defaults,noatime  0  2
UUID=$u3 none swap sw 0 0
tmpfs /tmp tmpfs defaults,size=1G 0 0
nas:/export/home /home nfs rw,hard 0 0
/srv/www /var/www none bind 0 0
/dev/sdb1 /mnt/backup ext4 noauto 0 0"
expect_eq "resume after" "$(cat "$root/etc/initramfs-tools/conf.d/resume")" "RESUME=UUID=$u3"
expect_eq "machine-id after" "$(stat -c '%s %a' "$root/etc/machine-id")" "0 444"
expect_eq "dbus machine-id after" "$(readlink "$root/var/lib/dbus/machine-id")" /etc/machine-id
expect_eq "hostname after" "$(cat "$root/etc/hostname")" n1
expect_eq "hosts after" "$(cat "$root/etc/hosts")" "$(printf '127.0.0.1\tlocalhost\n127.0.1.1\tn1.lab\tn1\n\n::1\tlocalhost ip6-localhost')"
expect_eq "net files after" "$(cd "$root" && find etc/udev var/lib/dhcp var/lib/dhcpcd var/lib/NetworkManager -type f | sort)" "var/lib/dhcp/dhclient.conf.keep"
if [ "$ssh_part" = yes ]; then
    expect_eq "new host keys" "$(cd "$root/etc/ssh" && ls ssh_host_* | sort | tr '\n' ' ')" \
        "ssh_host_ecdsa_key ssh_host_ecdsa_key.pub ssh_host_ed25519_key ssh_host_ed25519_key.pub ssh_host_rsa_key ssh_host_rsa_key.pub "
    grep -q '^ssh-ed25519 ' "$root/etc/ssh/ssh_host_ed25519_key.pub" || fail "no new ed25519 key: $(cat "$root/etc/ssh/ssh_host_ed25519_key.pub")"
fi
expect_no_chroot_mounts "fixup"

# ---- a second run changes nothing and says so ----
before=$(tree_digest)
run_capture "$KACLONE" "${args[@]}"
expect_eq "second run exit code ($err)" "$rc" 0
identity_notes=""
[ "$ssh_part" = yes ] || identity_notes="identity: ssh host keys skipped: no ssh-keygen in the target (ssh is not installed)
"
expect_eq "second run output" "$out" "$facts
fstab: nothing to change
${identity_notes}identity: nothing to change
network: nothing to change
initramfs: skipped: --skip initramfs
bootloader: skipped: --bootloader none
hooks: skipped: no /etc/kaclone/fixup.d in the target"
expect_eq "second run: tree unchanged" "$(tree_digest)" "$before"

# ---- in the chroot: stub initramfs and grub tools, hooks; failing steps ----
mkdir -p "$root/usr/sbin" "$root/etc/kaclone/fixup.d" "$root/var/log"
# stub NAME: a script that records its arguments and whether /proc and /dev/null are there.
stub() {
    cat >"$root/usr/sbin/$1" <<EOF
#!/bin/sh
echo "\$*" >>/var/log/$1.args
[ -e /proc/self/status ] && echo "proc mounted" >>/var/log/$1.args
[ -c /dev/null ] && echo "dev mounted" >>/var/log/$1.args
case "\$*" in *--fail*) echo "$1: asked to fail"; exit 4 ;; esac
exit 0
EOF
    chmod 755 "$root/usr/sbin/$1"
}
stub update-initramfs
stub grub-install
stub update-grub
cat >"$root/etc/kaclone/fixup.d/10-env" <<'EOF'
#!/bin/sh
echo "TARGET=$TARGET DISK=$DISK HOSTNAME=$HOSTNAME NODE_INDEX=$NODE_INDEX"
echo "second line"
EOF
printf '#!/bin/sh\necho boom\nexit 3\n' >"$root/etc/kaclone/fixup.d/20-fail"
echo 'not executable' >"$root/etc/kaclone/fixup.d/README"
chmod 755 "$root/etc/kaclone/fixup.d/10-env" "$root/etc/kaclone/fixup.d/20-fail"
echo 'lease' >"$root/var/lib/dhcp/dhclient.eth1.leases"
chattr +i "$root/var/lib/dhcp"

run_capture "$KACLONE" fixup "$root" --disk "$disk" --hostname n1 --bootloader none --initrd-args="-v -t"
expect_eq "failing steps: exit code" "$rc" 1
expect_eq "failing steps: stderr" "$err" "kaclone fixup: network: remove $root/var/lib/dhcp/dhclient.eth1.leases: Operation not permitted
kaclone fixup: hooks: /etc/kaclone/fixup.d/20-fail (exit status 3): command failed
kaclone fixup: 2 steps failed: network, hooks"
expect_eq "failing steps: stdout" "$(grep -v '^facts: ' <<<"$out")" "fstab: nothing to change
${identity_notes}identity: nothing to change
network: /var/lib/dhcp/dhclient.eth1.leases: removed
initramfs: run /usr/sbin/update-initramfs -u -k all -v -t
bootloader: skipped: --bootloader none
hooks: run /etc/kaclone/fixup.d/10-env
hooks: 10-env: TARGET=$root DISK=$disk HOSTNAME=n1 NODE_INDEX=
hooks: 10-env: second line
hooks: run /etc/kaclone/fixup.d/20-fail
hooks: 20-fail: boom"
expect_eq "update-initramfs saw" "$(cat "$root/var/log/update-initramfs.args")" "-u -k all -v -t
proc mounted
dev mounted"
expect_no_chroot_mounts "failing steps"
chattr -i "$root/var/lib/dhcp"
rm "$root/etc/kaclone/fixup.d/20-fail"

# A failing initramfs tool: reported, and the mounts are gone all the same.
run_capture "$KACLONE" fixup "$root" --only initramfs --initrd-args=--fail
expect_eq "failing initramfs: exit code" "$rc" 1
expect_eq "failing initramfs: stderr" "$err" "kaclone fixup: initramfs: /usr/sbin/update-initramfs -u -k all --fail (exit status 4; update-initramfs: asked to fail): command failed
kaclone fixup: 1 step failed: initramfs"
expect_no_chroot_mounts "failing initramfs"

# The boot loader: the dos boot flag on the /boot partition alone, grub-install for the disk,
# then update-grub, both with /proc mounted.
active() { sfdisk --dump "$disk" | grep -o '^/dev/[^ ]*  *:.*bootable' | cut -d' ' -f1 | tr '\n' ' '; }
sfdisk --activate "$disk" 1 >/dev/null 2>&1 || fail "cannot set the boot flag with sfdisk"
expect_eq "boot flag before" "$(active)" "${disk}p1 "
table_before=$(sfdisk --dump "$disk" | sed 's/, bootable//')
run_capture "$KACLONE" fixup "$root" --disk "$disk" --only bootloader
expect_eq "bootloader exit code ($err)" "$rc" 0
expect_eq "bootloader output" "$(grep -v '^facts: ' <<<"$out")" "fstab: skipped: not in --only
identity: skipped: not in --only
network: skipped: not in --only
initramfs: skipped: not in --only
bootloader: $disk: boot flag: partition 1 -> partition 2
bootloader: run /usr/sbin/grub-install --target=i386-pc $disk
bootloader: run /usr/sbin/update-grub
hooks: skipped: not in --only"
expect_eq "grub-install saw" "$(cat "$root/var/log/grub-install.args")" "--target=i386-pc $disk
proc mounted
dev mounted"
expect_eq "update-grub saw" "$(cat "$root/var/log/update-grub.args")" "
proc mounted
dev mounted"
expect_eq "boot flag after" "$(active)" "${disk}p2 "
expect_eq "table otherwise unchanged" "$(sfdisk --dump "$disk" | sed 's/, bootable//')" "$table_before"
expect_no_chroot_mounts "bootloader"
run_capture "$KACLONE" fixup "$root" --disk "$disk" --only bootloader
expect_eq "second bootloader run: boot flag left" "$(grep -c 'boot flag' <<<"$out" || true)" 0
expect_eq "second bootloader run: exit code ($err)" "$rc" 0

# An explicit old -> new map for an entry whose mount point is not on the new disk; the
# rewritten entry stays on later runs without the map.
echo "LABEL=olddata /srv/old ext4 defaults 0 2" >>"$root/etc/fstab"
run_capture "$KACLONE" fixup "$root" --disk "$disk" --only fstab --map "LABEL=olddata=${disk}p4"
expect_eq "--map exit code ($err)" "$rc" 0
expect_eq "--map output" "$(grep '^fstab' <<<"$out")" "fstab: /etc/fstab: LABEL=olddata /srv/old ext4 defaults 0 2 -> UUID=$u4 /srv/old ext4 defaults 0 2"
run_capture "$KACLONE" fixup "$root" --disk "$disk" --only fstab
expect_eq "after --map: run without it" "$(grep '^fstab' <<<"$out")" "fstab: nothing to change"
run_capture "$KACLONE" fixup "$root" --disk "$disk" --map "LABEL=x=/dev/nonesuch"
expect_eq "--map to nothing: exit code" "$rc" 2
expect_eq "--map to nothing: message" "$err" "kaclone fixup: --map: /dev/nonesuch is no filesystem of --disk
Run 'kaclone fixup --help' for usage."

# --hostnames: the line with one of this machine's MACs names it (a dry run: nothing written).
mac=$(cat /sys/class/net/*/address 2>/dev/null | grep -v '^00:00:00:00:00:00$' | head -n 1 || true)
if [ -n "$mac" ]; then
    printf '# rack 1\n02:00:00:00:00:99 other\n%s   n7   # this node\n' "${mac^^}" >"$work/hostnames"
    run_capture "$KACLONE" fixup "$root" --hostnames "$work/hostnames" --only identity --dry-run
    expect_eq "--hostnames exit code ($err)" "$rc" 0
    expect_eq "--hostnames output" "$(grep -v 'skipped: not in --only' <<<"$out")" "facts: hostname n7 ($work/hostnames:3, $mac)
identity: /etc/hostname: n1 -> n7
identity: /etc/hosts: 127.0.1.1	n1.lab	n1 -> 127.0.1.1	n7.lab	n7
dry run: nothing changed in $root"
    expect_eq "--hostnames dry run wrote nothing" "$(cat "$root/etc/hostname")" n1
else
    echo "NOTE: no network interface with a MAC address here: --hostnames matching is not exercised"
fi

# Never the running system.
run_capture "$KACLONE" fixup / --only network --dry-run
expect_eq "fixup /: exit code" "$rc" 1
expect_eq "fixup /: message" "$err" "kaclone fixup: / is the running system's root; give the clone's root"

# Usage errors.
run_capture "$KACLONE" fixup "$root" --skip kernel
expect_eq "unknown step: exit code" "$rc" 2
expect_eq "unknown step: message" "$err" "kaclone fixup: unknown step 'kernel' (use fstab, identity, network, initramfs, bootloader or hooks)
Run 'kaclone fixup --help' for usage."
printf 'aa:bb:cc:dd:ee:01 node01\n10.0.0.2 node02 extra\n' >"$work/hosts.txt"
run_capture "$KACLONE" fixup "$root" --hostnames "$work/hosts.txt"
expect_eq "bad hostnames file: exit code" "$rc" 1
expect_eq "bad hostnames file: message" "$err" "kaclone fixup: $work/hosts.txt:2 (3 columns, want 2): a hostnames line must be \`MAC-or-IP name\`"

echo "PASS: fixup"
