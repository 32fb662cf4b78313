// The image module: a directory tree as a tar stream and back, raw partitions, boot code.
// The relay carries these streams without knowing what is in them; libarchive stays inside.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include <kaclone/error_category.hpp>
#include <kaclone/result.hpp>

namespace kaclone::image {

// Failures of the image module. Values are only ever appended.
enum class errc {
    bad_exclude = 1,    // an --exclude is not a directory inside the tree being sent
    not_a_directory,    // the tree to send or the target root is not a directory
    archive_failed,     // libarchive could not read or write the stream (truncated, not tar, I/O)
    refused_entries,    // the stream held entries that would write outside the target root
    failed_entries,     // some entries could not be created on the target
    bad_mbr_size,       // boot code is not exactly 446 bytes
};

const std::error_category& category() noexcept;
std::error_code make_error_code(errc e) noexcept;

// One line for people, about one entry or event (a skipped socket, a refused entry, a warning).
using log_fn = std::function<void(const std::string&)>;

struct write_options {
    // Directories whose content is not sent (the directory itself is, with its mode, owner and
    // times). A relative path is relative to the tree's root; an absolute one must lie inside it.
    std::vector<std::filesystem::path> excludes;
    log_fn log;  // may be empty
};

struct write_stats {
    std::uint64_t entries = 0;        // entries written to the stream (the root included)
    std::uint64_t data_bytes = 0;     // file data read (holes not counted)
    std::uint64_t sockets_skipped = 0;
    std::uint64_t excluded_dirs = 0;  // excluded directories sent without their content
    std::uint64_t mounts_not_crossed = 0;  // directories on another filesystem, sent empty
    std::uint64_t warnings = 0;       // entries read incompletely (an unreadable xattr, ACL, file)
};

// Streams the tree at `root` (a directory, normally a mount point) into `out_fd` as a pax tar
// stream: regular files with their holes, hardlinks, symlinks, directories, device nodes and
// fifos (sockets are skipped and counted), numeric owners, modes, mtimes with nanoseconds,
// extended attributes (security.* included) and POSIX ACLs. Entry names are relative to
// `root` ("." is the root itself). A directory on another filesystem than `root` is sent
// without its content. Blocking; `out_fd` stays the caller's and is not closed. `stats` is
// updated as entries go, so it is meaningful also after an error. Errors: errc::bad_exclude,
// errc::not_a_directory, errc::archive_failed (where names the entry), or a system error.
// Note: libarchive's directory walk moves the process's working directory (fchdir) while it
// runs and restores it at the end; other threads must not use relative paths meanwhile.
result<void> write_tree(const std::filesystem::path& root, const write_options& options, int out_fd,
                        write_stats& stats);
// write_tree's check of `excludes` alone (errc::bad_exclude: not a directory, or not inside
// `root`), for a caller that wants to refuse them before anything is streamed.
result<void> check_excludes(const std::filesystem::path& root, const std::vector<std::filesystem::path>& excludes);

struct extract_options {
    log_fn log;  // may be empty
};

struct extract_stats {
    std::uint64_t entries = 0;   // entries created on the target
    std::uint64_t data_bytes = 0;
    std::uint64_t warnings = 0;  // entries created but not completely (an xattr, ACL, owner refused)
    std::uint64_t refused = 0;   // entries that would have written outside the target root
    std::uint64_t failed = 0;    // entries that could not be created at all
};

// Reads a tar stream from `in_fd` to its end and recreates it below `target_root` (an existing
// directory; "." in the stream is the root itself). Never writes outside it: an entry with an
// absolute path, a `..` component, or a parent path (or hardlink target) that goes through a
// symlink is refused, named in a log line, and nothing is written for it; extraction goes on
// with the next entry. Everything the writer keeps is restored, holes included, also on
// directories that exist before extraction (the root itself, a mount point, lost+found: owner,
// mode, times, xattrs and POSIX ACLs); what the target refuses (an xattr, an owner) is a
// warning naming the entry. After a refused or failed entry the stream is still read to its
// end, and the result is errc::refused_entries or errc::failed_entries (where: the count and
// the first entry). A stream that is not tar or is truncated: errc::archive_failed, the rest of
// `in_fd` is read and dropped so that a writer on the other end of a pipe is never left blocked.
// `in_fd` stays the caller's. Paths are handed to libarchive as absolute ones, so the working
// directory does not move (unless a path is longer than PATH_MAX: libarchive then reaches it
// by chdir).
result<void> extract_tree(int in_fd, const std::filesystem::path& target_root, const extract_options& options,
                          extract_stats& stats);

// What copy_raw does with a 4 KiB block that is all zeros.
enum class zero_blocks {
    hole,     // regular file: left as a hole; block device: written as zeros
    discard,  // regular file: a hole; block device: BLKDISCARD (zeros written if unsupported)
    write,    // written as zeros everywhere
};

struct raw_stats {
    std::uint64_t bytes = 0;        // bytes read and represented on the output
    std::uint64_t zero_blocks = 0;  // all-zero blocks that were not written as data
};

// Copies `in_fd` to its end into `out_fd` from offset 0 (a regular file is truncated first and
// ends with exactly the input's size; a block device must be at least that large). All-zero
// 4 KiB blocks are handled by `zeros`. Errors name the operation and the offset.
result<raw_stats> copy_raw(int in_fd, int out_fd, zero_blocks zeros);

// The boot code of an MBR: bytes 0..445 of a drive, before the partition table.
inline constexpr std::size_t mbr_boot_code_bytes = 446;
using mbr_boot_code = std::array<std::byte, mbr_boot_code_bytes>;

// The first 446 bytes of the drive (or image file) open on `drive_fd`.
result<mbr_boot_code> read_mbr(int drive_fd);
// The boot code in the file at `path`, which must be exactly 446 bytes long; otherwise
// errc::bad_mbr_size with where "PATH is N bytes".
result<mbr_boot_code> read_mbr_file(const std::filesystem::path& path);
// Writes `boot_code` (exactly 446 bytes, else errc::bad_mbr_size with where "N bytes") at
// offset 0 of `drive_fd`; bytes 446 and later (the partition table) are never touched.
result<void> write_mbr(int drive_fd, std::span<const std::byte> boot_code);

}  // namespace kaclone::image

template <>
struct std::is_error_code_enum<kaclone::image::errc> : std::true_type {};
