// Applying a layout plan to a real disk: the checks that refuse before anything is written,
// then the partition table (libfdisk), the kernel's partitions and their device nodes, one mkfs
// per filesystem, and the mounts (libmount). Needs root; libfdisk, libblkid and libmount stay in
// apply.cpp. The pure helpers (mkfs commands, mount order, program lookup) are declared here
// too, so tests can check them without a disk.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

#include <kaclone/layout.hpp>
#include <kaclone/result.hpp>

namespace kaclone::layout {

// Why apply() refused or stopped. Values are only appended.
enum class errc {
    in_use = 1,         // the disk or one of its partitions is mounted, swap, held by a device
                        // mapper or md device, or opened exclusively by another program
    holds_root,         // the disk holds the running `/`
    mkfs_missing,       // the mkfs program of an fs= is not in PATH
    kernel_fs_missing,  // the running kernel cannot mount the fs= of a partition with mount=
    label_too_long,     // a label= is longer than its filesystem allows
    not_a_disk,         // the path is not a block device, or is a partition of one
    table_write,        // libfdisk could not create or write the partition table
    partition_node,     // the kernel's partition or its /dev node could not be made
    mkfs_failed,        // an mkfs program failed
    mount_failed,       // a filesystem could not be mounted
};

const std::error_category& category() noexcept;
std::error_code make_error_code(errc e) noexcept;

// A block device as layout sees it.
struct disk_info {
    disk_facts facts;   // path, size (BLKGETSIZE64) and logical sector size (BLKSSZGET)
    std::string model;  // "QEMU HARDDISK", "loop device on /tmp/disk.img", or "" when unknown
};

// Reads the facts of the block device at `path`. Errors: it cannot be opened (naming it),
// errc::not_a_disk when it is not a block device.
result<disk_info> probe_disk(const std::string& path);

// The program that makes filesystem `fs` and the Debian package that has it.
struct mkfs_tool {
    std::string_view program;  // "mkfs.xfs", "mkswap"
    std::string_view package;  // "xfsprogs", "util-linux"
};

// The tool for an fs= name, or nothing for a name the format does not know.
std::optional<mkfs_tool> mkfs_tool_for(std::string_view fs);

// The longest label= (in bytes) that `fs` takes (ext4 16, xfs 12, vfat 11, ...).
std::size_t max_label_bytes(std::string_view fs);

// The argument vector that makes the filesystem of `part` on `node`: argv[0] is the program
// name (mkfs_tool_for(part.fs)->program), then options that never ask (-F, -f), the label
// (-L, or -n for vfat, -l for reiserfs) and `node`. Empty when `part.fs` is empty.
std::vector<std::string> mkfs_command(const planned_partition& part, const std::string& node);

// The executable `name` in the ':'-separated directories of `path_env` (an empty entry is the
// current directory), or "" when none has it.
std::string find_program(std::string_view name, std::string_view path_env);

// The partitions with a mount point, in the order to mount them: fewer path components first,
// then by name, so `/` comes before `/boot` before `/boot/efi`.
std::vector<const planned_partition*> mount_order(const plan& p);

// The size in bytes the kernel gives partition `part`: its size, except that a dos extended
// partition is 1 KiB (one sector when sectors are larger), like the kernel's own scan, so it
// does not overlap the logical partitions inside it.
std::uint64_t kernel_size_bytes(const planned_partition& part, unsigned sector_bytes);

struct apply_options {
    std::string desc_name;                        // names the description in messages ("sda.desc")
    std::string target = "/mnt/disk";             // the mount= points go below this directory
    std::string path_env;                         // where mkfs programs are looked up, like PATH
    std::function<void(const std::string&)> log;  // one line per step; may be empty
};

// The checks of the plan alone: every label= fits its filesystem (errc::label_too_long, with
// `where` "DESC:LINE (...)").
result<void> check_plan(const plan& p, const apply_options& options);

// Everything that refuses before the disk is touched, in this order, each error naming what:
// not a whole block device (not_a_disk), the disk holds the running `/` (holds_root), a
// partition is mounted or swap or held, or the disk is open exclusively (in_use), check_plan(),
// an mkfs program is not in `options.path_env` (mkfs_missing, naming the Debian package), the
// kernel cannot mount a filesystem that has a mount point (kernel_fs_missing). Reads only.
result<void> check(const plan& p, const apply_options& options);

// Lays the disk out: check(), then clears the first and last MiB of the disk and the first MiB
// of each partition (old tables and signatures), writes the table (libfdisk, the plan's starts
// and sizes exactly), has the kernel reread it (BLKRRPART, and BLKPG for what the reread did not
// give), waits up to 5 s for each partition's /dev node and makes it from sysfs when udev does
// not, makes each filesystem, and mounts them below `options.target` in mount_order(). Logs each
// step. On a failure after the table is written the disk is left as far as it got; what this
// call mounted is unmounted again.
result<void> apply(const plan& p, const apply_options& options);

}  // namespace kaclone::layout

template <>
struct std::is_error_code_enum<kaclone::layout::errc> : std::true_type {};
