// Disk layout: a desc_file and the facts of one disk -> a plan (where each partition goes).
//
// Planning is pure (no disk access, no root): make_plan() places the partitions of a
// description on a disk of a given size, format_plan() shows the result (`layout --dry-run`).
//
// Placement rules:
// - Every partition starts on a 1 MiB boundary; the first at 1 MiB (room for the MBR or the
//   primary GPT). A SIZE in bytes is kept exactly (rounded up to whole sectors); a percentage
//   of the whole disk and `fill` are rounded down to whole MiB.
// - dos: primary and extended partitions are numbered 1..4 in file order and laid out in that
//   order; logical partitions are numbered from 5 and live inside the extended partition, each
//   1 MiB after the end of the previous one (or the start of the extended one) for its EBR.
//   Nothing may reach beyond 2^32 sectors (2 TiB with 512-byte sectors), what an MBR can
//   address: `fill` stops there, a partition with a fixed size that crosses it does not fit.
// - gpt: partitions are numbered 1..n in file order; the last 1 MiB of the disk stays free for
//   the backup GPT (33 sectors of 512 bytes, rounded up to the alignment).
// - `fill` takes the rest of the disk (the usable part, rounded down to whole MiB), or of the
//   extended partition for a logical one.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <kaclone/desc.hpp>
#include <kaclone/result.hpp>

namespace kaclone::layout {

// Every partition start is a multiple of this.
inline constexpr std::uint64_t alignment_bytes = desc::mib_bytes;

// What the planner needs to know about the target disk (found by the caller, e.g. with
// libblkid; tests make them up).
struct disk_facts {
    std::string path;              // "/dev/sda": only named in messages
    std::uint64_t size_bytes = 0;  // the whole device
    unsigned sector_bytes = 512;   // logical sector size: a power of two, 512..1 MiB

    bool operator==(const disk_facts&) const = default;
};

struct planned_partition {
    int number = 0;  // dos: primary and extended 1..4, logical 5..; gpt: 1..n
    desc::placement place = desc::placement::primary;
    std::uint64_t start_bytes = 0;  // a multiple of alignment_bytes
    std::uint64_t size_bytes = 0;   // a multiple of the sector size
    std::string type;               // the canonical desc TYPE ("linux", "typefd", "esp", a GUID)
    std::uint8_t mbr_type = 0;      // dos: the MBR type byte (0x83, 0x82, 0x05, ...); gpt: 0
    std::string gpt_type;           // gpt: the type GUID, upper case; dos: ""
    std::string fs, mount, label;   // as in the description ("" when not given)
    std::vector<std::string> flags;
    int line = 0;  // the description line it comes from

    std::uint64_t end_bytes() const noexcept { return start_bytes + size_bytes; }
    bool operator==(const planned_partition&) const = default;
};

struct plan {
    desc::table_kind table = desc::table_kind::dos;
    disk_facts disk;
    std::vector<planned_partition> partitions;  // by number

    bool operator==(const plan&) const = default;
};

// Places the partitions of `file` on `disk`. `file_name` names the description in errors.
// Errors: the desc errors of desc::validate() (for a desc_file that did not come from
// desc::parse()); desc::errc::does_not_fit when a partition does not fit, with `where` =
// "FILE:LINE (DETAIL)", LINE the first partition (in file order) that does not fit and DETAIL
// the sizes, e.g. "sda.desc:2 (partitions need 5000 MiB but the disk /dev/loop0 has 4096 MiB)";
// kaclone::errc::out_of_range when `disk.sector_bytes` is not a power of two in 512..1 MiB.
result<plan> make_plan(const desc::desc_file& file, const disk_facts& disk,
                       std::string_view file_name);

// The plan as a table for people (`kaclone layout --dry-run`): a heading line with the disk,
// then one row per partition: NUMBER START SIZE TYPE FS MOUNT LABEL FLAGS, "-" for empty.
std::string format_plan(const plan& p);

}  // namespace kaclone::layout
