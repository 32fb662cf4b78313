// The disk description format ("desc"): text <-> desc_file, the partitions wanted on one disk.
//
// The grammar keeps the old Ka tools' files working unchanged and adds optional parts:
//
//     # comment (a whole line, or the rest of a line)
//     label: gpt                          optional, the first line that is not a comment;
//                                         `dos` (the default) or `gpt`
//     [logical] TYPE SIZE [fs=F] [mount=/PATH] [label=L] [flags=boot,esp,bios_grub]
//
// TYPE: with dos, `linux` (= type83), `swap` (= type82), `extended` (= type05, type0f, type85)
// or `typeXX`, an MBR type in hex (`typefd`, `typeef`); with gpt, `linux`, `swap`, `esp`, `bios`
// or a type GUID (8-4-4-4-12 hex digits). `logical` and `extended` exist only with dos.
// SIZE: a whole number of MiB (1048576 bytes: the old tool passed it to fdisk as `+NNNM`), a
// whole number with a binary unit K, M, G, T (or KiB, MiB, GiB, TiB), a percentage of the whole
// disk (`10%`), or `fill`: the rest of the disk, or of the extended partition for a logical one.
// Columns, in any order, each at most once: `fs=` ext2, ext3, ext4, xfs, btrfs, vfat, swap, jfs
// or reiserfs (swap only with TYPE swap); `mount=` an absolute path (not for swap); `label=` the
// filesystem label; `flags=` a comma-separated list of boot (dos and gpt), esp and bios_grub (gpt).
// Values hold no blanks and no `#`.
//
// Primary and extended partitions form one table and logical partitions another; `fill` must
// be the last partition of its table. dos holds at most 4 primary and extended partitions (one
// extended), gpt at most 128 partitions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

#include <kaclone/result.hpp>

namespace kaclone::desc {

// Why a description is rejected. Every error's `where` is exactly "FILE:LINE" ("sda.desc:3"),
// so the message reads "sda.desc:3: unknown partition type (...)". Values are only appended.
enum class errc {
    unknown_type = 1,          // TYPE is not one of the table's types (see the header comment)
    bad_size,                  // SIZE is missing, zero, too large, or not a number, unit, % or fill
    fill_not_last,             // `fill` is used before the last partition of its table
    logical_without_extended,  // a `logical` partition comes before any `extended` one
    two_extended,              // a second `extended` partition (dos holds one)
    too_many_primaries,        // more than 4 primary + extended (dos) or 128 partitions (gpt)
    extended_on_gpt,           // `extended` or `logical` with `label: gpt`
    bad_label,                 // a `label:` line that is not `label: dos|gpt` or not first
    bad_column,                // unknown key=, repeated key, bad fs=, relative mount=, bad
                               // label= or flags=, or a column that does not suit TYPE
    duplicate_mount,           // two partitions with the same mount= point
    does_not_fit,              // (the layout planner) the partitions do not fit on the disk
    bad_line,                  // anything else: a word that is not key=value, no TYPE
    no_partition_table,        // (derive) the disk has no partition table, or one that is
                               // neither dos nor gpt; `where` names the disk
    root_not_on_disk,          // (derive) `/` is not on a block device (overlay, tmpfs)
    no_partitions,             // (the layout planner) the description has no partition line
};

const std::error_category& category() noexcept;
std::error_code make_error_code(errc e) noexcept;

// One MiB: the unit of a bare SIZE, and the alignment of every partition the layout plans.
inline constexpr std::uint64_t mib_bytes = std::uint64_t{1} << 20;

enum class table_kind { dos, gpt };
// Where a partition lives: in the primary table, or (dos) inside the extended partition.
enum class placement { primary, logical };

enum class size_kind {
    bytes,    // `bytes` exactly (a whole number of KiB, more than 0)
    percent,  // `percent` (1..100) of the whole disk
    fill,     // the rest of the disk, or of the extended partition for a logical one
};

struct size_spec {
    size_kind kind = size_kind::fill;
    std::uint64_t bytes = 0;  // only for size_kind::bytes
    unsigned percent = 0;     // only for size_kind::percent

    static size_spec of_bytes(std::uint64_t b) { return {size_kind::bytes, b, 0}; }
    static size_spec of_percent(unsigned p) { return {size_kind::percent, 0, p}; }
    static size_spec fill() { return {size_kind::fill, 0, 0}; }

    bool operator==(const size_spec&) const = default;
};

// One partition line, in canonical form (what parse() makes and print() writes).
struct partition_spec {
    placement place = placement::primary;
    // dos: "linux", "swap", "extended" or "typeXX" (two lower-case hex digits, never one of
    // 83, 82, 05, 0f, 85, which are spelled by name); gpt: "linux", "swap", "esp", "bios" or an
    // upper-case GUID that is not one of those four.
    std::string type;
    size_spec size;
    std::string fs;     // empty, or one of the fs= names
    std::string mount;  // empty, or an absolute path without "//", ".", ".." or a final '/'
    std::string label;  // empty, or the filesystem label
    std::vector<std::string> flags;  // "boot", "esp", "bios_grub", each at most once, in order
    int line = 0;                    // the line of the file it came from (1-based)

    bool is_extended() const noexcept { return type == "extended"; }
    bool operator==(const partition_spec&) const = default;
};

struct desc_file {
    table_kind table = table_kind::dos;
    // The file has a `label:` line. print() writes one when this is set or the table is gpt,
    // so an old file (no label line) prints back without one.
    bool label_line = false;
    std::vector<partition_spec> partitions;  // in file order

    bool operator==(const desc_file&) const = default;
};

// Parses a description; `file_name` only names the place in errors. Stops at the first error
// (in file order), with `where` = "FILE:LINE" and one of the errc values (never does_not_fit).
result<desc_file> parse(std::string_view text, std::string_view file_name);

// Checks a desc_file that was not made by parse() (parse() already runs the same checks):
// canonical types, sizes and columns, and the table rules. Errors as for parse(), with each
// partition's `line`.
result<void> validate(const desc_file& file, std::string_view file_name);

// The canonical text of a valid `file`: no comments, a `label:` line only when `label_line` is
// set or the table is gpt, single spaces, a size in whole MiB as a bare number (else in K),
// columns in the order fs= mount= label= flags=. parse(print(f)) gives `f` back except for
// `line`, which becomes the line in the printed text.
std::string print(const desc_file& file);

// The canonical text of one SIZE: "3500", "1536K", "10%", "fill".
std::string print_size(const size_spec& size);

// The MBR type byte of a canonical dos TYPE ("linux" 0x83, "swap" 0x82, "extended" 0x05,
// "typeef" 0xef), or 0 when `type` is not one.
std::uint8_t mbr_type(std::string_view type) noexcept;

// The GPT type GUID (upper case) of a canonical gpt TYPE ("esp" C12A7328-F81F-11D2-BA4B-
// 00A0C93EC93B, a GUID itself), or "" when `type` is not one.
std::string gpt_type_guid(std::string_view type);

}  // namespace kaclone::desc

template <>
struct std::is_error_code_enum<kaclone::desc::errc> : std::true_type {};
