# Sourced first (before lib.sh) by the tests that mount filesystems: the mounts a test makes
# must not leak into the mount namespaces that other tests create meanwhile (`ip netns exec`
# copies the host's mounts while / is private): a copy there keeps a filesystem, and so its
# disk, busy after our umount. So the test re-runs itself in a private mount namespace of its
# own, where it can make one (as root, with unshare).
if [ -z "${KACLONE_DISK_NS:-}" ] && [ "$(id -u)" -eq 0 ] &&
    unshare --mount --propagation private true 2>/dev/null; then
    KACLONE_DISK_NS=1 exec unshare --mount --propagation private bash "$0" "$@"
fi
