// write_tree: one filesystem's directory tree as a pax tar stream (libarchive read_disk -> write).
#include <kaclone/image.hpp>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <set>
#include <utility>
#include <vector>

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

// read_disk names entries "ROOT/a/b"; the stream names them "a/b" and the root ".".
std::string relative_name(const std::string& disk_name, const std::string& root_name) {
    std::string_view rest = disk_name;
    if (rest.starts_with(root_name)) rest.remove_prefix(root_name.size());
    while (rest.starts_with('/')) rest.remove_prefix(1);
    return rest.empty() ? std::string(".") : std::string(rest);
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

class tree_writer {
public:
    tree_writer(const write_options& options, write_stats& stats) : options_(options), stats_(stats) {}

    result<void> run(const std::filesystem::path& root, int out_fd) {
        struct stat root_st {};
        if (::stat(root.c_str(), &root_st) != 0) return last_sys_error("stat " + root.string());
        if (!S_ISDIR(root_st.st_mode)) return error{make_error_code(errc::not_a_directory), root.string()};
        auto excludes = resolve_excludes(root, options_.excludes);
        if (!excludes) return std::move(excludes).error();
        excludes_ = *std::move(excludes);
        root_dev_ = root_st.st_dev;
        root_name_ = root.string();
        while (root_name_.size() > 1 && root_name_.ends_with('/')) root_name_.pop_back();
        // Our own lookups below the root go from this descriptor: read_disk moves the working
        // directory while it walks.
        auto root_fd = open_fd(root, O_PATH | O_DIRECTORY);
        if (!root_fd) return std::move(root_fd).error();
        root_fd_ = *std::move(root_fd);

        disk_.reset(archive_read_disk_new());
        out_.reset(archive_write_new());
        resolver_.reset(archive_entry_linkresolver_new());
        if (!disk_ || !out_ || !resolver_) return sys_error(ENOMEM, "libarchive");
        // Physical: symlinks are entries, never followed. No uname/gname lookup: owners travel
        // as numbers, which is what a clone of the same system wants.
        archive_read_disk_set_symlink_physical(disk_.get());
        // NO_SPARSE: read_disk would probe every regular file for holes (five or six lseek calls
        // each, the largest share of its system calls on a tree of small files); find_holes()
        // probes only the files whose allocated blocks do not cover their size.
        if (archive_read_disk_set_behavior(disk_.get(), ARCHIVE_READDISK_NO_TRAVERSE_MOUNTS | ARCHIVE_READDISK_NO_SPARSE) !=
            ARCHIVE_OK)
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
        if (archive_read_disk_open(disk_.get(), root_name_.c_str()) != ARCHIVE_OK) return fail(disk_.get(), root_name_);

        for (;;) {
            detail::entry_ptr entry{archive_entry_new()};
            const int r = archive_read_next_header2(disk_.get(), entry.get());
            if (r == ARCHIVE_EOF) break;
            if (r == ARCHIVE_FATAL) return fail(disk_.get(), "read " + root_name_);
            if (r < ARCHIVE_WARN) {  // this entry is unusable; the walk goes on
                warn(archive_message(disk_.get()));
                continue;
            }
            if (r == ARCHIVE_WARN) warn(std::string(archive_entry_pathname(entry.get())) + ": " + archive_message(disk_.get()));
            if (auto sent = send(entry.get()); !sent) return sent;
        }
        if (archive_write_close(out_.get()) != ARCHIVE_OK) return fail(out_.get(), "end of stream");
        return {};
    }

private:
    result<void> send(archive_entry* entry) {
        const std::string name = relative_name(archive_entry_pathname(entry), root_name_);
        const auto type = archive_entry_filetype(entry);
        if (type == AE_IFSOCK) {
            ++stats_.sockets_skipped;
            log("skipped socket " + name);
            return {};
        }
        if (type == AE_IFDIR) {
            const file_id id{archive_entry_dev(entry), static_cast<ino_t>(archive_entry_ino(entry))};
            if (excludes_.contains(id)) {
                ++stats_.excluded_dirs;
                log("excluded the content of " + name);
            } else if (id.dev != root_dev_) {
                ++stats_.mounts_not_crossed;
                log("not crossing into the filesystem mounted on " + name);
            } else if (archive_read_disk_can_descend(disk_.get()) &&
                       archive_read_disk_descend(disk_.get()) != ARCHIVE_OK) {
                warn(name + ": " + archive_message(disk_.get()));
            }
        }
        archive_entry_copy_pathname(entry, name.c_str());
        archive_entry* to_write = entry;
        archive_entry* unused = nullptr;
        // Hardlinks: the first name of an inode carries the data, later ones link to it.
        archive_entry_linkify(resolver_.get(), &to_write, &unused);
        if (to_write == nullptr) return {};
        unique_fd holey;  // the file, opened here when it has holes: its data is read here too
        if (type == AE_IFREG && archive_entry_hardlink(to_write) == nullptr && archive_entry_size(to_write) > 0)
            holey = find_holes(name, to_write);
        const int r = archive_write_header(out_.get(), to_write);
        if (r == ARCHIVE_FATAL) return fail(out_.get(), name);
        if (r < ARCHIVE_WARN) {
            warn(name + ": " + archive_message(out_.get()));
            return {};
        }
        if (r == ARCHIVE_WARN) warn(name + ": " + archive_message(out_.get()));
        ++stats_.entries;
        if (type != AE_IFREG || archive_entry_hardlink(to_write) != nullptr || archive_entry_size(to_write) <= 0) return {};
        if (holey) return send_sparse_data(name, to_write, holey.get());
        return send_data(name, static_cast<std::uint64_t>(archive_entry_size(to_write)));
    }

    // A regular file whose allocated blocks cover less than its size may have holes: its data
    // ranges go into `entry`'s sparse map (SEEK_DATA/SEEK_HOLE), and the file, opened here, is
    // returned for send_sparse_data. An empty descriptor: no holes (or they cannot be found,
    // then the file is sent whole, zeros and all, with a warning).
    unique_fd find_holes(const std::string& name, archive_entry* entry) {
        const auto size = static_cast<off_t>(archive_entry_size(entry));
        const auto same_file = [entry](const struct stat& st) {
            return S_ISREG(st.st_mode) && st.st_ino == static_cast<ino_t>(archive_entry_ino(entry)) &&
                   st.st_dev == static_cast<dev_t>(archive_entry_dev(entry));
        };
        const auto cannot = [&](int err) {
            warn(name + ": cannot look for holes (" + std::strerror(err) + "), sent whole");
            return unique_fd{};
        };
        // One fstatat for most files; the open only for those that may have holes.
        struct stat st {};
        unique_fd fd;
        if (name.size() >= PATH_MAX) {
            fd = open_below_root(name);
            if (!fd || ::fstat(fd.get(), &st) != 0) return cannot(errno);
        } else if (::fstatat(root_fd_.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
            return cannot(errno);
        }
        if (!same_file(st)) return cannot(ESTALE);  // replaced since read_disk saw it
        if (st.st_blocks * 512 >= size) return {};  // every byte allocated (the usual case): no holes
        if (!fd) fd = open_below_root(name);
        if (!fd || ::fstat(fd.get(), &st) != 0) return cannot(errno);
        if (!same_file(st)) return cannot(ESTALE);
        std::vector<std::pair<off_t, off_t>> ranges;  // data: offset, length
        for (off_t at = 0; at < size;) {
            const off_t data = ::lseek(fd.get(), at, SEEK_DATA);
            if (data < 0 && errno == ENXIO) break;  // only a hole from `at` to the end
            const off_t hole = data < 0 ? -1 : ::lseek(fd.get(), data, SEEK_HOLE);
            if (data < 0 || hole < 0) {
                return cannot(errno);
            }
            ranges.emplace_back(data, std::min(hole, size) - data);
            at = hole;
        }
        if (ranges.size() == 1 && ranges[0] == std::pair<off_t, off_t>{0, size}) return {};  // no holes after all
        for (const auto& [offset, length] : ranges) archive_entry_sparse_add_entry(entry, offset, length);
        // A file that is one hole: an empty range at its end tells the writer so.
        if (ranges.empty()) archive_entry_sparse_add_entry(entry, size, 0);
        return fd;
    }

    // The file `name` below the root, opened for reading without following a symlink in its
    // last component; a name of PATH_MAX bytes or more is reached one directory at a time.
    unique_fd open_below_root(const std::string& name) {
        constexpr int flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
        if (name.size() < PATH_MAX) return unique_fd{::openat(root_fd_.get(), name.c_str(), flags)};
        unique_fd dir{::dup(root_fd_.get())};
        std::string_view rest = name;
        for (auto slash = rest.find('/'); dir && slash != std::string_view::npos; slash = rest.find('/')) {
            dir = unique_fd{::openat(dir.get(), std::string(rest.substr(0, slash)).c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)};
            rest.remove_prefix(slash + 1);
        }
        if (!dir) return {};
        return unique_fd{::openat(dir.get(), std::string(rest).c_str(), flags)};
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

    // Data blocks come at their file offsets, holes skipped; the gaps go in as zeros that the
    // pax writer drops again (see write_zeros).
    result<void> send_data(const std::string& name, std::uint64_t size) {
        std::uint64_t done = 0;
        for (;;) {
            const void* block = nullptr;
            std::size_t block_bytes = 0;
            la_int64_t offset = 0;
            const int r = archive_read_data_block(disk_.get(), &block, &block_bytes, &offset);
            if (r == ARCHIVE_EOF) break;
            if (r != ARCHIVE_OK) {  // the file shrank or cannot be read: pad, keep the stream whole
                warn(name + ": " + archive_message(disk_.get()));
                break;
            }
            const auto at = static_cast<std::uint64_t>(offset);
            if (at > done && !write_zeros(out_.get(), at - done)) return fail(out_.get(), name);
            if (at > done) done = at;
            const la_ssize_t written = archive_write_data(out_.get(), block, block_bytes);
            if (written < 0) return fail(out_.get(), name);
            done += block_bytes;
            stats_.data_bytes += block_bytes;
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
    unique_fd root_fd_;  // the root, O_PATH
    detail::read_archive disk_;
    detail::write_archive out_;
    detail::linkresolver_ptr resolver_;
};

}  // namespace

result<void> write_tree(const std::filesystem::path& root, const write_options& options, int out_fd, write_stats& stats) {
    tree_writer writer{options, stats};
    return writer.run(root, out_fd);
}

}  // namespace kaclone::image
