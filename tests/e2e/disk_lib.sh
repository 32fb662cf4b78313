# Loop disks of the disk tests (tests/e2e/disk_layout.sh, fixup.sh, image_loop.sh,
# clone_failure.sh, golden_lib.sh): sourced after lib.sh, never run. Tests that mount source
# private_mounts.sh first.
#
#   require_loop_devices       skip unless root, losetup and /dev/loop-control are here
#   attach_disk VAR FILE SIZE  a new sparse FILE of SIZE and a loop device on it (--partscan),
#                              its path in $VAR; both undone by disks_cleanup
#   attach_file VAR FILE       the same for an existing FILE (a table written into it first)
#   track_loop DEV             a loop device attached otherwise, undone by disks_cleanup
#   detach_disk DEV            detach DEV now and remove its file
#   disks_cleanup              swapoff of the loop devices' partitions, unmount everything below
#                              $work and $data (deepest first), detach the loop devices, remove
#                              their files (logs stay on failure, see lib.sh). Each test registers
#                              it with on_exit where it fits: on_exit runs the last registered
#                              first, so register it before cluster_up or data_dir when the disks
#                              must go after the cluster and before $data

_disk_loops=()
_disk_files=()

require_loop_devices() {
    require_root
    command -v losetup >/dev/null || skip "needs losetup (util-linux)"
    [ -e /dev/loop-control ] || skip "no /dev/loop-control: loop devices are not available here"
}

attach_disk() {
    rm -f "$2"
    truncate -s "$3" "$2"
    attach_file "$1" "$2"
}

attach_file() {
    local _attached  # not `dev`: VAR may be the caller's local of that name
    _disk_files+=("$2")
    _attached=$(losetup --find --show --partscan "$2") || skip "cannot attach loop devices here"
    _disk_loops+=("$_attached")
    printf -v "$1" '%s' "$_attached"
}

track_loop() { _disk_loops+=("$1"); }

detach_disk() {
    local dev=$1 k file
    file=$(losetup -n -O BACK-FILE "$dev")
    losetup -d "$dev"
    rm -f "$file"
    for k in "${!_disk_loops[@]}"; do
        [ "${_disk_loops[k]}" != "$dev" ] || unset '_disk_loops[k]'
    done
}

disks_cleanup() {
    local dev swap target f dir
    for dev in "${_disk_loops[@]}"; do
        while read -r swap _; do
            case "$swap" in "$dev"p*) swapoff "$swap" || true ;; esac
        done < <(tail -n +2 /proc/swaps)
    done
    for dir in "$work" "${data:-}"; do
        [ -n "$dir" ] || continue
        while read -r target; do
            umount "$target" 2>/dev/null || umount -l "$target" || true
        done < <(findmnt -rn -o TARGET | grep "^$dir/" | sort -r)
    done
    for dev in "${_disk_loops[@]}"; do losetup -d "$dev" 2>/dev/null || true; done
    for f in "${_disk_files[@]}"; do rm -f "$f"; done
    _disk_loops=()
    _disk_files=()
}
