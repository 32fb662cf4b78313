// write_tree: one filesystem's directory tree as a pax tar stream (our walk, libarchive's metadata and writer).
#include <kaclone/image.hpp>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <set>
#include <utility>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <kaclone/unique_fd.hpp>

#include "archive_handle.hpp"

namespace kaclone::image {
namespace {

using detail::archive_message;

struct file_id {
    dev_t dev;
    ino_t ino;
    auto operator<=>(const file_id&) const = default;
};

// The excludes as device and inode, so that a path spelled differently (or reached through a
// bind mount's name) still matches the directory read_disk visits.
result<std::set<file_id>> resolve_excludes(const std::filesystem::path& root, const std::vector<std::filesystem::path>& excludes) {
    std::error_code ec;
    const auto canonical_root = std::filesystem::canonical(root, ec);
    if (ec) return sys_error(ec.value(), "resolve " + root.string());
    std::set<file_id> ids;
    for (const auto& exclude : excludes) {
        const auto path = exclude.is_absolute() ? exclude : root / exclude;
        struct stat st {};
        if (::lstat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
            return error{make_error_code(errc::bad_exclude), exclude.string() + " (no directory " + path.string() + ")"};
        const auto canonical = std::filesystem::canonical(path, ec);
        if (ec) return sys_error(ec.value(), "resolve " + path.string());
        const auto inside = canonical.lexically_relative(canonical_root);
        if (inside.empty() || *inside.begin() == "..")
            return error{make_error_code(errc::bad_exclude), exclude.string() + " (not inside " + canonical_root.string() + ")"};
        ids.insert({st.st_dev, st.st_ino});
    }
    return ids;
}

// Feeds `bytes` zeros to the writer: the pax writer drops the parts that its sparse map says
// are holes, so holes cost no stream bytes but must still be "written".
bool write_zeros(archive* out, std::uint64_t bytes) {
    static const std::vector<char> zeros(1 << 16, 0);
    while (bytes > 0) {
        const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(bytes, zeros.size()));
        const la_ssize_t written = archive_write_data(out, zeros.data(), n);
        if (written < 0) return false;
        if (written == 0) return true;  // the entry is complete (sparse map exhausted)
        bytes -= static_cast<std::uint64_t>(written);
    }
    return true;
}

// The walk is our own (openat/fstatat from each directory's descriptor: no path is ever
// longer than a name, one open per file for both its metadata and its data); libarchive's
// read_disk only reads what a descriptor or path has beyond the stat (xattrs, ACLs, file
// flags, a symlink's target), through archive_read_disk_entry_from_file.
class tree_writer {
public:
    tree_writer(const write_options& options, write_stats& stats) : options_(options), stats_(stats) {}

    result<void> run(const std::filesystem::path& root, int out_fd) {
        auto excludes = resolve_excludes(root, options_.excludes);
        if (!excludes) return std::move(excludes).error();
        excludes_ = *std::move(excludes);
        root_name_ = root.string();
        while (root_name_.size() > 1 && root_name_.ends_with('/')) root_name_.pop_back();
        auto root_fd = open_fd(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (!root_fd) return std::move(root_fd).error();
        struct stat root_st {};
        if (::fstat(root_fd->get(), &root_st) != 0) return last_sys_error("stat " + root.string());
        root_dev_ = root_st.st_dev;
        proc_fd_ = ::access("/proc/self/fd", X_OK) == 0;

        disk_.reset(archive_read_disk_new());
        out_.reset(archive_write_new());
        resolver_.reset(archive_entry_linkresolver_new());
        if (!disk_ || !out_ || !resolver_) return sys_error(ENOMEM, "libarchive");
        // Physical: symlinks are entries, never followed. No uname/gname lookup: owners travel
        // as numbers, which is what a clone of the same system wants. NO_SPARSE: holes are
        // probed here, only in files whose allocated blocks do not cover their size.
        archive_read_disk_set_symlink_physical(disk_.get());
        if (archive_read_disk_set_behavior(disk_.get(), ARCHIVE_READDISK_NO_SPARSE) != ARCHIVE_OK)
            return fail(disk_.get(), "read_disk behaviour");
        // Full pax (not pax_restricted): every entry carries its mtime with nanoseconds.
        if (archive_write_set_format_pax(out_.get()) != ARCHIVE_OK) return fail(out_.get(), "pax format");
        // Names, link targets and owners' names are bytes on Linux: stored as they are, whatever
        // the locale (without this, a non-UTF-8 locale turns every non-ASCII name into a warning).
        if (archive_write_set_format_option(out_.get(), "pax", "hdrcharset", "BINARY") != ARCHIVE_OK)
            return fail(out_.get(), "pax hdrcharset");
        archive_write_set_bytes_per_block(out_.get(), 64 << 10);
        archive_write_set_bytes_in_last_block(out_.get(), 1);  // no padding after the end marker
        if (archive_write_open_fd(out_.get(), out_fd) != ARCHIVE_OK) return fail(out_.get(), "open stream");
        archive_entry_linkresolver_set_strategy(resolver_.get(), archive_format(out_.get()));

        if (auto sent = send_directory(".", "", root_fd->get(), root_st); !sent) return sent;
        if (archive_write_close(out_.get()) != ARCHIVE_OK) return fail(out_.get(), "end of stream");
        return {};
    }

private:
    // A directory's entry, then (unless it is excluded or another filesystem's) its content.
    // `prefix` names its entries ("" for the root's, else "a/b/").
    result<void> send_directory(const std::string& name, const std::string& prefix, int fd, const struct stat& st) {
        // A directory's default ACL is read by path only.
        if (auto sent = send(name, fd, st, proc_fd_ ? "/proc/self/fd/" + std::to_string(fd) : root_name_ + "/" + name); !sent)
            return sent;
        if (excludes_.contains({st.st_dev, st.st_ino})) {
            ++stats_.excluded_dirs;
            log("excluded the content of " + name);
            return {};
        }
        if (st.st_dev != root_dev_) {
            ++stats_.mounts_not_crossed;
            log("not crossing into the filesystem mounted on " + name);
            return {};
        }
        // The names first, then the directory stream is closed: one descriptor per level.
        std::vector<std::pair<std::string, unsigned char>> names;  // and d_type
        {
            DIR* dir = ::fdopendir(::dup(fd));
            if (dir == nullptr) {
                warn(name + ": cannot read the directory (" + std::strerror(errno) + ")");
                return {};
            }
            errno = 0;
            while (const dirent* d = ::readdir(dir)) {
                if (std::strcmp(d->d_name, ".") != 0 && std::strcmp(d->d_name, "..") != 0) names.emplace_back(d->d_name, d->d_type);
                errno = 0;
            }
            const int read_errno = errno;
            ::closedir(dir);
            if (read_errno != 0) warn(name + ": cannot read the whole directory (" + std::strerror(read_errno) + ")");
        }
        for (const auto& [child, type] : names) {
            const std::string child_name = prefix + child;
            struct stat cst {};
            // A regular file, as the directory says: opened and stat'ed through the descriptor
            // (no fstatat first). Anything else, or a name that is not one any more: fstatat.
            if (type == DT_REG) {
                const unique_fd file = open_below(fd, child, O_RDONLY | O_NONBLOCK, cst);
                if (file && S_ISREG(cst.st_mode)) {
                    if (auto sent = send(child_name, file.get(), cst); !sent) return sent;
                    continue;
                }
                if (!file && errno == EMFILE) return sys_error(EMFILE, "open " + child_name);
            }
            if (::fstatat(fd, child.c_str(), &cst, AT_SYMLINK_NOFOLLOW) != 0) {
                warn(child_name + ": " + std::strerror(errno) + " (gone while the tree was read?)");
                continue;
            }
            if (S_ISSOCK(cst.st_mode)) {
                ++stats_.sockets_skipped;
                log("skipped socket " + child_name);
                continue;
            }
            if (!S_ISDIR(cst.st_mode) && !S_ISREG(cst.st_mode)) {  // symlinks, devices, fifos: by path
                const std::string path = proc_fd_ ? "/proc/self/fd/" + std::to_string(fd) + "/" + child : root_name_ + "/" + child_name;
                if (auto sent = send(child_name, -1, cst, path); !sent) return sent;
                continue;
            }
            struct stat now {};
            unique_fd opened = open_below(fd, child, S_ISDIR(cst.st_mode) ? O_RDONLY | O_DIRECTORY : O_RDONLY | O_NONBLOCK, now);
            if (!opened && errno == EMFILE)
                return sys_error(EMFILE, "open " + child_name + " (directories nested deeper than the open file limit; raise ulimit -n)");
            if (!opened || now.st_ino != cst.st_ino || now.st_dev != cst.st_dev) {
                warn(child_name + ": cannot open (" + std::strerror(opened ? ESTALE : errno) + "), not sent");
                continue;
            }
            auto sent = S_ISDIR(now.st_mode) ? send_directory(child_name, child_name + "/", opened.get(), now)
                                             : send(child_name, opened.get(), now);
            if (!sent) return sent;
        }
        return {};
    }

    // `child` of the directory `dir_fd`, opened without following a symlink, and its stat.
    // Empty (errno says why) when it cannot be opened or stat'ed.
    static unique_fd open_below(int dir_fd, const std::string& child, int flags, struct stat& st) {
        unique_fd fd{::openat(dir_fd, child.c_str(), flags | O_NOFOLLOW | O_CLOEXEC)};
        if (fd && ::fstat(fd.get(), &st) != 0) return {};
        return fd;
    }

    // One entry: metadata from `st` and (xattrs, ACLs, flags) from `fd` or `source_path`
    // (what libarchive reads by path: a symlink's target, a directory's default ACL), then the
    // header, then a regular file's data from `fd`.
    result<void> send(const std::string& name, int fd, const struct stat& st, const std::string& source_path = {}) {
        detail::entry_ptr owned{archive_entry_new()};
        archive_entry* entry = owned.get();
        archive_entry_copy_pathname(entry, name.c_str());
        if (!source_path.empty()) archive_entry_copy_sourcepath(entry, source_path.c_str());
        const int got = archive_read_disk_entry_from_file(disk_.get(), entry, fd, &st);
        if (got < ARCHIVE_WARN) {
            warn(name + ": " + archive_message(disk_.get()) + ", not sent");
            return {};
        }
        if (got == ARCHIVE_WARN) warn(name + ": " + archive_message(disk_.get()));
        archive_entry* to_write = entry;
        archive_entry* unused = nullptr;
        // Hardlinks: the first name of an inode carries the data, later ones link to it.
        archive_entry_linkify(resolver_.get(), &to_write, &unused);
        if (to_write == nullptr) return {};
        const bool data = S_ISREG(st.st_mode) && archive_entry_hardlink(to_write) == nullptr && st.st_size > 0;
        const bool holes = data && find_holes(name, to_write, fd, st);
        const int r = archive_write_header(out_.get(), to_write);
        if (r == ARCHIVE_FATAL) return fail(out_.get(), name);
        if (r < ARCHIVE_WARN) {
            warn(name + ": " + archive_message(out_.get()));
            return {};
        }
        if (r == ARCHIVE_WARN) warn(name + ": " + archive_message(out_.get()));
        ++stats_.entries;
        if (!data) return {};
        if (holes) return send_sparse_data(name, to_write, fd);
        return send_data(name, fd, static_cast<std::uint64_t>(st.st_size));
    }

    // A regular file whose allocated blocks cover less than its size may have holes: its data
    // ranges go into `entry`'s sparse map (SEEK_DATA/SEEK_HOLE) and true is returned. False:
    // no holes (or they cannot be found: then the file is sent whole, zeros and all, with a
    // warning).
    bool find_holes(const std::string& name, archive_entry* entry, int fd, const struct stat& st) {
        const off_t size = st.st_size;
        if (st.st_blocks * 512 >= size) return false;  // every byte allocated (the usual case): no holes
        std::vector<std::pair<off_t, off_t>> ranges;  // data: offset, length
        for (off_t at = 0; at < size;) {
            const off_t data = ::lseek(fd, at, SEEK_DATA);
            if (data < 0 && errno == ENXIO) break;  // only a hole from `at` to the end
            const off_t hole = data < 0 ? -1 : ::lseek(fd, data, SEEK_HOLE);
            if (data < 0 || hole < 0) {
                warn(name + ": cannot look for holes (" + std::strerror(errno) + "), sent whole");
                return false;
            }
            ranges.emplace_back(data, std::min(hole, size) - data);
            at = hole;
        }
        if (ranges.size() == 1 && ranges[0] == std::pair<off_t, off_t>{0, size}) return false;  // no holes after all
        for (const auto& [offset, length] : ranges) archive_entry_sparse_add_entry(entry, offset, length);
        // A file that is one hole: an empty range at its end tells the writer so.
        if (ranges.empty()) archive_entry_sparse_add_entry(entry, size, 0);
        return true;
    }

    // The data ranges of `entry`'s sparse map, read from `fd` (see find_holes), holes given to
    // the writer as zeros that it drops (see write_zeros).
    result<void> send_sparse_data(const std::string& name, archive_entry* entry, int fd) {
        static thread_local std::vector<char> buffer(1 << 20);
        const auto size = static_cast<std::uint64_t>(archive_entry_size(entry));
        std::uint64_t done = 0;
        la_int64_t offset = 0, length = 0;
        archive_entry_sparse_reset(entry);
        while (archive_entry_sparse_next(entry, &offset, &length) == ARCHIVE_OK) {
            const auto at = static_cast<std::uint64_t>(offset);
            if (at > done && !write_zeros(out_.get(), at - done)) return fail(out_.get(), name);
            done = std::max(done, at);
            for (auto left = static_cast<std::uint64_t>(length); left > 0;) {
                const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(left, buffer.size()));
                const ssize_t got = ::pread(fd, buffer.data(), want, static_cast<off_t>(done));
                if (got < 0 && errno == EINTR) continue;
                if (got <= 0) {  // the file shrank or cannot be read: pad, keep the stream whole
                    warn(name + ": " + (got < 0 ? std::strerror(errno) : "shorter than its size"));
                    left = 0;
                    break;
                }
                if (archive_write_data(out_.get(), buffer.data(), static_cast<std::size_t>(got)) < 0) return fail(out_.get(), name);
                done += static_cast<std::uint64_t>(got);
                left -= static_cast<std::uint64_t>(got);
                stats_.data_bytes += static_cast<std::uint64_t>(got);
            }
        }
        if (done < size && !write_zeros(out_.get(), size - done)) return fail(out_.get(), name);
        return {};
    }

    // The data of a file without holes, read from `fd` to its size from the stat.
    result<void> send_data(const std::string& name, int fd, std::uint64_t size) {
        static thread_local std::vector<char> buffer(1 << 20);
        std::uint64_t done = 0;
        while (done < size) {
            const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(size - done, buffer.size()));
            const ssize_t got = ::read(fd, buffer.data(), want);
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) {  // the file shrank or cannot be read: pad, keep the stream whole
                warn(name + ": " + (got < 0 ? std::strerror(errno) : "shorter than its size"));
                break;
            }
            if (archive_write_data(out_.get(), buffer.data(), static_cast<std::size_t>(got)) < 0) return fail(out_.get(), name);
            done += static_cast<std::uint64_t>(got);
            stats_.data_bytes += static_cast<std::uint64_t>(got);
        }
        if (done < size && !write_zeros(out_.get(), size - done)) return fail(out_.get(), name);
        return {};
    }

    result<void> fail(archive* a, const std::string& what) {
        return error{make_error_code(errc::archive_failed), what + ": " + archive_message(a)};
    }
    void warn(const std::string& line) {
        ++stats_.warnings;
        log("warning: " + line);
    }
    void log(const std::string& line) {
        if (options_.log) options_.log(line);
    }

    const write_options& options_;
    write_stats& stats_;
    std::set<file_id> excludes_;
    dev_t root_dev_ = 0;
    std::string root_name_;
    bool proc_fd_ = false;  // /proc/self/fd/N/NAME reaches a name below a directory descriptor
    detail::read_archive disk_;
    detail::write_archive out_;
    detail::linkresolver_ptr resolver_;
};

}  // namespace

result<void> check_excludes(const std::filesystem::path& root, const std::vector<std::filesystem::path>& excludes) {
    auto ids = resolve_excludes(root, excludes);
    if (!ids) return std::move(ids).error();
    return {};
}

result<void> write_tree(const std::filesystem::path& root, const write_options& options, int out_fd, write_stats& stats) {
    tree_writer writer{options, stats};
    return writer.run(root, out_fd);
}

}  // namespace kaclone::image
