// The manifest of a whole-machine clone: what a session's streams are, in what order, and for
// which partition or mount point, with the layout description, the excludes and the fixup
// settings. The server sends it first; every node reads it before it touches its disk.
//
// Text, one record per line, values percent-encoded (%XX for bytes outside printable ASCII,
// blanks, `%` and `=`), so it can be read, diffed and kept as a log:
//
//     kaclone-manifest 1
//     session lab3
//     desc label: dos
//     desc linux 20480 fs=ext4 mount=/
//     desc linux fill fs=xfs mount=/data
//     stream 1 tree partition=1 mount=/ fs=ext4 label=root uuid=5c1f... estimate=2147483648 exclude=/tmp
//     stream 2 tree partition=2 mount=/data fs=xfs uuid=9e2a...
//     stream 3 raw partition=3 bytes=1048576
//     stream 4 boot-code bytes=446
//     fixup bootloader=grub initrd-args=
//     hostnames 52:54:00:12:34:01 node01
//     end
//
// `desc` lines carry the description file (desc::print's text), one line each, in order;
// `hostnames` lines carry the --hostnames file the same way (none without one).
// Stream ids are 1, 2, ... in the order the streams follow; keys of a `stream` line depend on
// its kind: tree (partition, mount, fs, label, uuid, estimate: the bytes used on the golden
// filesystem, for progress only; exclude repeatable), raw (partition, bytes, fs), boot-code
// (bytes). Readers refuse another major version and ignore keys they do
// not know, so minor additions stay compatible.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

#include <kaclone/result.hpp>

namespace kaclone::manifest {

inline constexpr unsigned version = 1;

// Why a manifest is refused. Values are only appended.
enum class errc {
    bad_header = 1,   // the first line is not `kaclone-manifest N`
    other_version,    // N is a version this kaclone does not read
    bad_line,         // a record kaclone does not know, or a malformed key=value
    bad_stream,       // stream ids out of order, an unknown kind, a value that cannot be right
    no_end,           // the text stops before `end`
};
const std::error_category& category() noexcept;
std::error_code make_error_code(errc e) noexcept;

enum class stream_kind { tree, raw, boot_code };

struct stream_entry {
    stream_kind kind = stream_kind::tree;
    std::uint32_t id = 0;               // 1, 2, ... in the order the streams follow
    std::string partition;              // number of the partition on the golden disk ("1")
    std::string mount;                  // tree: its mount point ("/", "/boot")
    std::string fs;                     // tree: its type; raw: its type if known
    std::string label, uuid;            // the golden filesystem's (fixup maps old -> new)
    std::uint64_t bytes = 0;            // raw: the partition's size; boot-code: 446
    std::uint64_t estimate = 0;         // tree: bytes used on the golden filesystem (progress only)
    std::vector<std::string> excludes;  // tree: directories whose content is not sent
    bool operator==(const stream_entry&) const = default;
};

struct fixup_settings {
    std::string bootloader = "grub";  // grub or none
    std::string initrd_args;
    bool operator==(const fixup_settings&) const = default;
};

struct manifest {
    std::string session;
    std::string desc;  // the description file's text (desc::print), each line ending in \n
    std::vector<stream_entry> streams;
    fixup_settings fixup;
    std::string hostnames;  // the --hostnames file's text, each line ending in \n ("" for none)
    bool operator==(const manifest&) const = default;
};

std::string encode(const manifest& m);
// Parses `text`; errors name `where` and the line ("manifest:7").
result<manifest> decode(std::string_view text, std::string_view where);

}  // namespace kaclone::manifest

template <>
struct std::is_error_code_enum<kaclone::manifest::errc> : std::true_type {};
