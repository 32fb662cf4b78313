// Describing an existing disk: its partition table, filesystems and mount points -> desc_file.
//
// Two halves. describe() and find_mount_point() are pure: they turn "table facts" (what libfdisk,
// libblkid and libmount report, gathered by the caller or made up by a test) into a desc_file.
// derive() gathers those facts from a real disk and the running system; root_disk() and
// running_mounts() are the system queries that the layout tool shares. libfdisk, libblkid and
// libmount stay in derive.cpp.
//
// What the description keeps of a disk: the table kind; per partition its placement (primary,
// extended, logical), TYPE, size, filesystem and label (libblkid), mount point (the running
// system's mounts, else an fstab) and flags. It drops the positions: layout places partitions
// one after another on 1 MiB boundaries, so a disk that `kaclone layout` made describes back to
// the file it came from (with `fill_last::yes` when that file used `fill`).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <kaclone/desc.hpp>
#include <kaclone/result.hpp>

namespace kaclone::desc {

// One partition as a partition table and the probes report it.
struct partition_facts {
    int number = 0;                 // 1..4 primary/extended, 5.. logical (dos); 1..128 (gpt)
    std::uint64_t start_bytes = 0;  // only orders the partitions
    std::uint64_t size_bytes = 0;
    bool extended = false;      // dos: the container of the logical partitions
    bool logical = false;       // dos: inside the extended partition
    std::uint8_t mbr_type = 0;  // dos: the type byte
    std::string gpt_type;       // gpt: the type GUID (any case)
    bool boot = false;          // dos: the active flag; gpt: the legacy BIOS bootable bit
    std::string fs;             // libblkid's TYPE ("ext4", "vfat", "LVM2_member"), or ""
    std::string label;          // libblkid's LABEL, or ""
    std::string mount;          // where it is mounted (see find_mount_point), or ""
};

struct table_facts {
    table_kind table = table_kind::dos;
    std::vector<partition_facts> partitions;  // any order: describe() orders them by number
};

// Whether the last partition of each table (the primary one, and the logical one) gets `fill`
// instead of its size: what users did by hand to the old tool's output.
enum class fill_last { no, yes };

// A description and what it could not say about the disk, one sentence per note ("partition 3:
// filesystem ntfs is not one of ext2, ... ; fs= left out").
struct derived {
    desc_file file;
    std::vector<std::string> notes;
};

// The description of `table`: partitions by number, each with its canonical TYPE, its size in
// whole MiB when exact (else whole KiB, rounded down with a note), `fs=` when libblkid's type is
// one the format knows, `label=` and `mount=` when they can be written (a value with a blank or
// `#`, a mount point used twice, or columns a TYPE cannot have are left out with a note), and
// `flags=`: boot for `boot`; on gpt also esp for the ESP type and bios_grub for the BIOS boot
// type (the canonical form: layout sets those types for those flags). The file has a `label:`
// line for gpt only, so an old-style dos file describes back without one. Never fails: what
// cannot be said becomes a note.
derived describe(const table_facts& table, fill_last fill);

// A mounted filesystem (from /proc/self/mountinfo) or an fstab line.
struct mount_entry {
    std::string source;  // "/dev/sda1" (symlinks resolved by the caller), "UUID=...", "LABEL=..."
    std::string target;  // the mount point
    unsigned major = 0, minor = 0;  // mountinfo: the device number (0:0 when unknown)
    bool whole = true;  // mountinfo: the filesystem's root is mounted (not a bind of a subdir)
};

// What identifies a partition in those entries.
struct partition_identity {
    std::string node;                   // "/dev/loop0p1"
    unsigned major = 0, minor = 0;      // 0:0 when the kernel has no such partition
    std::string uuid, label, partuuid;  // filesystem UUID and LABEL, partition UUID ("" unknown)
};

// The mount point of the partition `id`: the first whole mount in `running` of that device
// (by device number, or by source), else the first `fstab` entry whose source is its node,
// UUID=, LABEL= or PARTUUID= (case-insensitive for UUIDs); "" when none.
// With a `root` ("/mnt/disk"), only running mounts at `root` or below count and are returned
// relative to it ("/mnt/disk/data" -> "/data"): the mount points of a system laid out there;
// fstab targets are taken as they are (that fstab belongs to the system under `root`).
std::string find_mount_point(const partition_identity& id, std::span<const mount_entry> running,
                             std::span<const mount_entry> fstab, std::string_view root = {});

// The kernel name of partition `number` of the disk named `disk` ("sda", 1 -> "sda1";
// "loop0", 1 -> "loop0p1": a 'p' when the disk name ends in a digit).
std::string partition_name(std::string_view disk, int number);

// What derive() reads.
struct derive_options {
    std::string disk;  // "/dev/sda"; "" for the disk that holds `/`
    fill_last fill = fill_last::no;
    // "" for the running system's mounts and /etc/fstab; else mounts below `root` (relative to
    // it) and `root`/etc/fstab, see find_mount_point.
    std::string root;
};

// Reads the partition table of `options.disk` (dos or gpt, libfdisk), probes each partition
// for a filesystem (libblkid: the partition's device when the kernel has one, else the disk at
// the partition's offset), finds mount points, and describe()s the result. The disk may also
// be an image file. Errors name the disk: it cannot be opened, has no partition table or one
// that is neither dos nor gpt.
result<derived> derive(const derive_options& options);

// The whole disks that hold the running `/`: "/dev/sda" for / on /dev/sda2; for / on a device
// mapper or md device (LVM, RAID), every disk below it, following /sys/class/block/X/slaves.
// `derive` without a disk describes the first. Errors: `/` is not on a block device (a
// container's overlay, tmpfs).
result<std::vector<std::string>> root_disks();

// The running system's mounts, /proc/self/mountinfo through libmount, sources resolved.
result<std::vector<mount_entry>> running_mounts();

}  // namespace kaclone::desc
