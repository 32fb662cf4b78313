// Post-clone fixups of a cloned root: named steps (fstab, identity, network, initramfs,
// bootloader, hooks), each planned from plain "facts" into a list of edits and commands, then
// applied by a thin apply() that writes files atomically and runs commands in a chroot.
//
// Three layers. The text functions (rewrite_fstab, rewrite_resume, rewrite_hosts,
// parse_hostnames, match_hostname) are pure and need neither root nor files. plan_step() reads
// the target tree and returns what its step would change, writing nothing. apply() writes a
// plan (temp file + rename, keeping mode and owner) and runs its commands in a chroot with
// /dev, /proc, /sys and /run mounted for the run and always unmounted after it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

#include <kaclone/result.hpp>

namespace kaclone::fixup {

// Why a fixup failed. Values are only appended.
enum class errc {
    bad_hostnames_line = 1,  // a --hostnames line is not `MAC-or-IP name`
    bad_address,             // the first column is neither a MAC address nor an IP address
    bad_hostname,            // a host name is empty, too long or has characters hosts refuse
    duplicate_address,       // an address is given twice in the hostnames file
    no_hostname_match,       // no line of the hostnames file names an address of this node
    ambiguous_hostname,      // this node's addresses match lines with different names
    unknown_step,            // a step name that is not one of step_names()
    symlink_refused,         // a file to edit is a symlink (it could point out of the target)
    command_failed,          // a program run for a step exited non-zero or was killed
    mount_failed,            // /dev, /proc, /sys or /run could not be mounted in the target
    not_a_disk,              // --disk is not a block device with partitions
};

const std::error_category& category() noexcept;
std::error_code make_error_code(errc e) noexcept;

// ---- facts ----

// A filesystem (or swap) of the clone's new disk.
struct new_filesystem {
    std::string node;      // "/dev/sdb1"
    std::string type;      // libblkid TYPE: "ext4", "swap", "vfat"
    std::string uuid;      // filesystem UUID ("" when it has none: then it is never used)
    std::string label;     // "" when none
    std::string partuuid;  // the partition's UUID, "" when unknown
    std::string mount;     // where the clone mounts it ("/", "/boot"); "" for swap or unknown
    int number = 0;        // the partition's number on the disk (0 when unknown)
};

// Everything the steps know about the clone and this node.
struct facts {
    std::string target;                        // the clone's root directory ("/mnt/disk")
    std::string disk;                          // the clone's disk ("/dev/sdb"), or ""
    std::vector<new_filesystem> filesystems;   // of `disk`, in partition order
    std::string table;                         // the partition table of `disk`: "dos", "gpt", ""
    std::vector<int> active_partitions;        // dos: the partitions with the boot flag set
    // Explicit old -> new: an fstab source as written ("UUID=1234-...", "/dev/sda1",
    // "LABEL=root") -> the new filesystem's UUID. Wins over matching by mount point.
    std::map<std::string, std::string> old_to_new;
    // The clone's root filesystem UUID when no filesystem of `filesystems` mounts at "/"
    // (see filesystem_uuid); marks the SSH host keys made for this clone. "" when unknown.
    std::string root_uuid;
    std::string hostname;                      // "" keeps the clone's
    std::optional<int> node_index;             // NODE_INDEX for hooks, when known
    std::string bootloader = "grub";           // "grub" or "none"
    std::vector<std::string> initrd_args;      // appended to the initramfs command
};

// ---- pure text functions ----

// One changed line of a file, for the log: `old_line` -> `new_line` ("" for none).
struct change {
    std::string old_line;
    std::string new_line;
};

// A text rewrite: the whole new text and the lines that differ.
struct rewritten {
    std::string text;
    std::vector<change> changes;  // empty: `text` is the input, byte for byte
};

// Rewrites `fstab` so every entry that names a cloned filesystem names it by `UUID=`:
// an entry whose source is /dev/NAME, UUID= (quoted or not), LABEL=, PARTUUID=, PARTLABEL= or
// /dev/disk/by-* and that is (1) in `old_to_new` (by its source as written, UUIDs in any case),
// else (2) not swap and mounted where a new filesystem mounts, else (3) swap: the n-th such swap
// entry gets the n-th new swap. Only the source field changes; options, dump/pass, separators
// and trailing text stay as they were. Comments, blank lines, bind mounts, tmpfs, nfs, proc,
// swap files and entries of nothing cloned are byte-identical. Rewriting the result again gives
// it back unchanged.
rewritten rewrite_fstab(std::string_view fstab, const std::vector<new_filesystem>& filesystems,
                        const std::map<std::string, std::string>& old_to_new);

// The same for an initramfs-tools resume file (`RESUME=...` lines): a device given by any of
// those forms becomes `UUID=` of the mapped filesystem, else of the first new swap. `none` and
// `auto` stay.
rewritten rewrite_resume(std::string_view resume, const std::vector<new_filesystem>& filesystems,
                         const std::map<std::string, std::string>& old_to_new);

// /etc/hosts with the 127.0.1.1 line naming `hostname`: names equal to `old_hostname` become
// `hostname`, `old_hostname.DOMAIN` becomes `hostname.DOMAIN`; when none of its names is the
// old one the line's names are replaced by `hostname` alone (a trailing comment stays). With no
// such line, "127.0.1.1\tHOSTNAME" is appended.
rewritten rewrite_hosts(std::string_view hosts, std::string_view old_hostname,
                        std::string_view hostname);

// The content of /etc/hostname for `hostname`: "NAME\n".
std::string hostname_file(std::string_view hostname);

// One line of a --hostnames file.
struct hostname_entry {
    std::string address;  // a MAC (lower case, colons) or an IP address as written
    std::string name;
    int line = 0;
};

// Parses a hostnames file: lines `MAC-or-IP name`, blanks and `#` comments ignored. Errors
// (bad_hostnames_line, bad_address, bad_hostname, duplicate_address) have `where`
// "FILE:LINE". MACs are accepted with ':' or '-' and in any case.
result<std::vector<hostname_entry>> parse_hostnames(std::string_view text,
                                                    std::string_view file_name);

// The entry for a node with the addresses `addresses` (MACs lower case with colons, IPs as
// inet_ntop prints them). Errors: no_hostname_match (where: "FILE", listing the addresses),
// ambiguous_hostname (where: "FILE:A and FILE:B").
result<hostname_entry> match_hostname(const std::vector<hostname_entry>& entries,
                                      const std::vector<std::string>& addresses,
                                      std::string_view file_name);

// The string is a host name hosts(5) takes: 1..253 bytes of letters, digits, '-' and '.', no
// label empty, starting or ending with '-'.
bool valid_hostname(std::string_view name);

// ---- steps ----

// The names of the steps, in the order they run.
const std::vector<std::string>& step_names();

// A file change below the target. `path` is absolute inside the target ("/etc/fstab").
struct edit {
    enum class kind { write, remove, symlink };
    std::string path;
    kind what = kind::write;
    std::string content;          // write: the whole new content; symlink: where it points
    std::vector<change> changes;  // what the log says (lines, or the file's old/new state)
};

// A program run inside the target (chroot). argv[0] is a path inside the target.
struct command {
    std::vector<std::string> argv;
    std::vector<std::string> env;  // "NAME=value" added to a minimal environment
    std::string label;             // names the command in the log ("update-initramfs", a hook)
    bool log_output = false;       // every output line is logged (hooks)
};

// The boot flag (dos "active") of a disk: set on `partition` alone.
struct boot_flag_change {
    std::string disk;            // "/dev/sdb"
    int partition = 0;           // the partition that gets the flag
    std::vector<int> was_active;  // the partitions that had it before
};

// What a step would do. An empty `skipped` means it applies; then `edits` are written first,
// the boot flag set, `commands` run in order, and `after` is written only when they all
// succeeded.
struct step_plan {
    std::string step;
    std::string skipped;             // why the step does not apply, or ""
    std::vector<std::string> notes;  // parts of the step that do not apply, with the reason
    std::vector<edit> edits;
    std::vector<command> commands;
    std::vector<edit> after;
    std::optional<boot_flag_change> boot_flag;
    bool empty() const noexcept {
        return edits.empty() && commands.empty() && after.empty() && !boot_flag;
    }
};

// Reads the target below `f.target` and plans step `name` (one of step_names()). Reads only.
// Errors: unknown_step; a file that exists but cannot be read (naming it).
result<step_plan> plan_step(std::string_view name, const facts& f);

// ---- apply ----

enum class dry_run { no, yes };

struct apply_options {
    dry_run mode = dry_run::no;
    std::function<void(const std::string&)> log;  // one line per change; may be empty
};

// Logs and applies `plan` below `target`: each edit as "STEP: FILE: old -> new" (a removal
// logs "STEP: FILE: removed"), the boot flag as "STEP: DISK: boot flag: old -> new" (written
// with libfdisk), each command as "STEP: run ARGV" ("would run" with dry_run::yes, which
// writes and runs nothing; a hook's output lines follow as "STEP: NAME: line"). Writes go to a temp
// file in the same directory that is renamed over the old one, with the old mode and owner.
// Commands run chrooted into `target` with /dev, /proc, /sys and /run mounted (and unmounted
// afterwards, also on failure). The first failure stops this plan and is returned.
result<void> apply(const step_plan& plan, const std::string& target,
                   const apply_options& options);

// ---- this node and the new disk ----

// The MAC addresses (/sys/class/net/*/address, lower case, without 00:00:00:00:00:00) and IP
// addresses (getifaddrs, loopback left out) of this machine.
std::vector<std::string> local_addresses();

// The UUID of the filesystem that holds `path` (libblkid on the block device of its st_dev),
// or "" when that is not a block device (tmpfs, overlay, btrfs subvolumes) or has no UUID.
std::string filesystem_uuid(const std::string& path);

// What probe_disk() finds on the clone's disk.
struct disk_probe {
    std::string table;                        // "dos", "gpt", or "" (none, or another kind)
    std::vector<new_filesystem> filesystems;  // in partition order
    std::vector<int> active_partitions;       // dos: with the boot flag set
};

// The partition table (libfdisk) and the filesystems on the partitions (libblkid) of the block
// device `disk`, with the mount point of each that is mounted at `target` or below (relative
// to `target`). Reads only. Errors: not_a_disk, or the device cannot be opened (naming it).
result<disk_probe> probe_disk(const std::string& disk, const std::string& target);

}  // namespace kaclone::fixup

template <>
struct std::is_error_code_enum<kaclone::fixup::errc> : std::true_type {};
