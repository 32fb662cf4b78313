// extract_tree: a tar stream recreated below a target root, never outside it (libarchive
// read -> write_disk, with our own path checks before libarchive's).
#include <kaclone/image.hpp>

#include <cerrno>
#include <climits>
#include <cstring>
#include <set>
#include <string_view>
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

// The entry name split into its components without "" and "." (so "./a//b" is {a, b}), or
// why it is refused.
struct checked_name {
    std::vector<std::string_view> parts;
    std::string refusal;  // empty when the name is acceptable
};

checked_name split_name(std::string_view name) {
    checked_name out;
    if (name.empty()) {
        out.refusal = "an empty name";
        return out;
    }
    if (name.front() == '/') {
        out.refusal = "an absolute path";
        return out;
    }
    while (!name.empty()) {
        const auto slash = name.find('/');
        const auto part = name.substr(0, slash);
        name.remove_prefix(slash == std::string_view::npos ? name.size() : slash + 1);
        if (part.empty() || part == ".") continue;
        if (part == "..") {
            out.refusal = "a '..' component";
            return out;
        }
        out.parts.push_back(part);
    }
    return out;
}

std::string join_path(const std::string& root, const std::vector<std::string_view>& parts) {
    std::string path = root;
    for (const auto part : parts) {
        path += '/';
        path += part;
    }
    return path;
}

// Reads and drops the rest of `fd` so that a writer on the other end of a pipe finishes.
void drain(int fd) {
    static thread_local std::vector<char> sink(1 << 16);
    for (;;) {
        const ssize_t n = ::read(fd, sink.data(), sink.size());
        if (n > 0 || (n < 0 && errno == EINTR)) continue;
        return;
    }
}

class tree_extractor {
public:
    tree_extractor(const extract_options& options, extract_stats& stats) : options_(options), stats_(stats) {}

    result<void> run(int in_fd, const std::filesystem::path& target_root) {
        auto done = extract(in_fd, target_root);
        drain(in_fd);
        if (!done) return done;
        if (stats_.refused > 0)
            return error{make_error_code(errc::refused_entries),
                         std::to_string(stats_.refused) + (stats_.refused == 1 ? " entry" : " entries") + ", the first " + first_refused_};
        if (stats_.failed > 0)
            return error{make_error_code(errc::failed_entries),
                         std::to_string(stats_.failed) + (stats_.failed == 1 ? " entry" : " entries") + ", the first " + first_failed_};
        return {};
    }

private:
    result<void> extract(int in_fd, const std::filesystem::path& target_root) {
        // Our checks compare against the real path: a symlink in the root's own name is the
        // operator's choice, not the stream's.
        std::error_code ec;
        const auto root = std::filesystem::canonical(target_root, ec);
        if (ec) return sys_error(ec.value(), "target root " + target_root.string());
        if (!std::filesystem::is_directory(root, ec)) return error{make_error_code(errc::not_a_directory), root.string()};
        root_ = root.string();
        if (root_ == "/") root_.clear();  // so that root_ + "/" + name stays one slash

        in_.reset(archive_read_new());
        disk_.reset(archive_write_disk_new());
        if (!in_ || !disk_) return sys_error(ENOMEM, "libarchive");
        archive_read_support_format_tar(in_.get());
        // No uname/gname lookup: owners are restored by number (the clone has the same users).
        // SECURE_NODOTDOT repeats our check inside libarchive; absolute paths are what we hand
        // it (root + name), so NOABSOLUTEPATHS cannot be used and our check stands for it.
        // SECURE_SYMLINKS is not set: in libarchive 3.6 it opens and stats every component of
        // the absolute path for every entry (about 20 syscalls for a file 3 levels below a root
        // 3 levels deep, half the extraction time); parent_refusal() does the same check once
        // per directory, and extract_entry() removes a symlink that a directory entry would
        // otherwise be restored through, which is what SECURE_SYMLINKS did besides.
        // SPARSE is not set either: holes come from the stream's sparse maps (libarchive seeks
        // over them); SPARSE would also scan every data block for zeros (an fstat per file
        // and smaller writes) and make the clone sparser than its source.
        archive_write_disk_set_options(disk_.get(), ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME |
                                                        ARCHIVE_EXTRACT_XATTR | ARCHIVE_EXTRACT_ACL | ARCHIVE_EXTRACT_FFLAGS |
                                                        ARCHIVE_EXTRACT_SECURE_NODOTDOT);
        if (archive_read_open_fd(in_.get(), in_fd, 64 << 10) != ARCHIVE_OK) return fail(in_.get(), "open stream");

        for (;;) {
            archive_entry* entry = nullptr;
            const int r = archive_read_next_header(in_.get(), &entry);
            if (r == ARCHIVE_EOF) break;
            if (r < ARCHIVE_WARN) return fail(in_.get(), "read stream");
            const char* raw_name = archive_entry_pathname(entry);
            const std::string name = raw_name != nullptr ? raw_name : "";
            if (r == ARCHIVE_WARN) warn(name + ": " + archive_message(in_.get()));
            if (auto one = extract_entry(entry, name); !one) return one;
        }
        // Created directories' modes, times and ACLs, deepest first (libarchive's fixup list).
        const int closed = archive_write_close(disk_.get());
        if (closed == ARCHIVE_WARN) warn("directory attributes: " + archive_message(disk_.get()));
        else if (closed != ARCHIVE_OK) return fail(disk_.get(), "finish directories");
        // Deepest first, so that setting a directory's times is not undone below it.
        for (auto it = existing_dirs_.rbegin(); it != existing_dirs_.rend(); ++it) restore_times(*it);
        return {};
    }

    // A directory entry onto a directory that was there before (the target root, lost+found
    // of a fresh filesystem, /home mounted before extraction). libarchive restores its owner,
    // mode, xattrs and POSIX ACLs like those of the directories it creates, but sets its times
    // at once, not at the end (it defers them only after its own mkdir): entries created in it
    // later move its mtime again. So they are set once more here, at the end.
    struct existing_dir {
        std::string name;  // as in the stream, checked
        std::string path;  // root_ + the name's components
        timespec times[2];
    };

    void restore_times(const existing_dir& dir) {
        const auto checked = split_name(dir.name);
        int err = 0;
        if (dir.path.size() < PATH_MAX || checked.parts.empty()) {
            if (::utimensat(AT_FDCWD, dir.path.c_str(), dir.times, AT_SYMLINK_NOFOLLOW) != 0) err = errno;
        } else if (auto parent = open_parent(checked.parts, checked.parts.size()); !parent) {
            err = parent.error().code.value();
        } else if (::utimensat(parent->get(), std::string(checked.parts.back()).c_str(), dir.times, AT_SYMLINK_NOFOLLOW) != 0) {
            err = errno;
        }
        if (err != 0) warn(dir.name + ": could not restore the times of the existing directory (" + std::strerror(err) + ")");
    }

    // Checks that no directory on the way to the last component exists as anything but a real
    // directory: a symlink there could lead anywhere, and the writer never produces one (it
    // sends real directories), so any is refused. Components that do not exist yet cannot be
    // symlinks; libarchive creates them as directories. Directories found real are remembered
    // until an entry replaces them (forget()).
    std::string parent_refusal(const std::vector<std::string_view>& parts) {
        std::string path = root_;
        for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
            path += '/';
            path += parts[i];
            if (checked_dirs_.contains(path)) continue;
            struct stat st {};
            if (const int err = lstat_below_root(parts, i + 1, path, st); err != 0) {
                if (err == ENOENT || err == ENOTDIR) return {};  // missing: nothing below it exists either
                return "its path cannot be checked (" + std::string(std::strerror(err)) + ")";
            }
            if (S_ISLNK(st.st_mode)) return "its path goes through the symlink " + path.substr(root_.size() + 1);
            if (!S_ISDIR(st.st_mode)) return {};  // libarchive fails on it: a failed entry, not an escape
            checked_dirs_.insert(path);
        }
        return {};
    }

    // lstat of `path`, which is the root and `parts[0..count)`; 0 or an errno value. A path of
    // PATH_MAX bytes or more cannot be named in one call (libarchive reaches it by chdir):
    // it is looked up from the root one component at a time, none followed if a symlink.
    int lstat_below_root(const std::vector<std::string_view>& parts, std::size_t count, const std::string& path, struct stat& st) {
        if (path.size() < PATH_MAX) return ::lstat(path.c_str(), &st) == 0 ? 0 : errno;
        auto parent = open_parent(parts, count);
        if (!parent) return parent.error().code.value();
        return ::fstatat(parent->get(), std::string(parts[count - 1]).c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : errno;
    }

    // Removes the symlink at `path` (the root and `parts`), as lstat_below_root names it.
    int unlink_below_root(const std::vector<std::string_view>& parts, const std::string& path) {
        if (path.size() < PATH_MAX) return ::unlink(path.c_str()) == 0 ? 0 : errno;
        auto parent = open_parent(parts, parts.size());
        if (!parent) return parent.error().code.value();
        return ::unlinkat(parent->get(), std::string(parts.back()).c_str(), 0) == 0 ? 0 : errno;
    }

    // The directory holding root/parts[0..count), reached without following any symlink.
    result<unique_fd> open_parent(const std::vector<std::string_view>& parts, std::size_t count) {
        auto dir = open_fd(root_.empty() ? "/" : root_, O_PATH | O_DIRECTORY);
        if (!dir) return dir;
        for (std::size_t i = 0; i + 1 < count; ++i) {
            const int next = ::openat(dir->get(), std::string(parts[i]).c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (next < 0) return last_sys_error("open a directory below the root");
            *dir = unique_fd{next};
        }
        return dir;
    }

    // `path` is about to be replaced by a non-directory (a symlink, say): it and everything
    // below it must be looked at again.
    void forget(const std::string& path) {
        const auto at_or_below = [&path](const std::string& p) {
            return p.starts_with(path) && (p.size() == path.size() || p[path.size()] == '/');
        };
        std::erase_if(existing_dirs_, [&](const existing_dir& d) { return at_or_below(d.path); });
        if (checked_dirs_.empty()) return;
        checked_dirs_.erase(path);
        // Below it: the names from "path/" up to "path0" ('0' follows '/' in ASCII).
        checked_dirs_.erase(checked_dirs_.lower_bound(path + '/'), checked_dirs_.lower_bound(path + '0'));
    }

    result<void> extract_entry(archive_entry* entry, const std::string& name) {
        auto checked = split_name(name);
        if (checked.refusal.empty()) checked.refusal = parent_refusal(checked.parts);
        if (checked.refusal.empty() && checked.parts.empty() && archive_entry_filetype(entry) != AE_IFDIR)
            checked.refusal = "it would replace the target root, which is a directory";
        if (checked.refusal.empty()) {
            if (const char* link = archive_entry_hardlink(entry); link != nullptr) {
                auto target = split_name(link);
                if (target.refusal.empty() && target.parts.empty()) target.refusal = "names the target root";
                if (target.refusal.empty()) target.refusal = parent_refusal(target.parts);
                const std::string target_path = join_path(root_, target.parts);
                struct stat st {};
                // A hardlink to a symlink is harmless until data is written "into" it: opening
                // the new name would follow the symlink wherever it points.
                if (target.refusal.empty() && archive_entry_size(entry) > 0 &&
                    lstat_below_root(target.parts, target.parts.size(), target_path, st) == 0 && S_ISLNK(st.st_mode))
                    target.refusal = "a symlink as its last component, and the entry carries data";
                if (!target.refusal.empty()) checked.refusal = "its hardlink target " + std::string(link) + " has " + target.refusal;
                else archive_entry_copy_hardlink(entry, target_path.c_str());
            }
        }
        if (!checked.refusal.empty()) {
            refuse(name, checked.refusal);
            return {};  // its data is skipped by the next read_next_header
        }
        const std::string path = checked.parts.empty() ? (root_.empty() ? "/" : root_) : join_path(root_, checked.parts);
        if (archive_entry_filetype(entry) == AE_IFDIR) {
            // libarchive creates a directory over a symlink by stat()ing through it and then
            // fixing up the mode, owner and times of whatever it points to: the symlink goes
            // first. Anything else in the way is libarchive's to replace.
            struct stat st {};
            const bool exists = checked.parts.empty() || lstat_below_root(checked.parts, checked.parts.size(), path, st) == 0;
            if (exists && !checked.parts.empty() && S_ISLNK(st.st_mode)) {
                if (const int err = unlink_below_root(checked.parts, path); err != 0) {
                    failed(name, "cannot remove the symlink in its place (" + std::string(std::strerror(err)) + ")");
                    return {};
                }
            } else if (exists && (checked.parts.empty() || S_ISDIR(st.st_mode))) {
                existing_dir dir{name, path, {{0, UTIME_OMIT}, {0, UTIME_OMIT}}};
                if (archive_entry_atime_is_set(entry)) dir.times[0] = {archive_entry_atime(entry), archive_entry_atime_nsec(entry)};
                if (archive_entry_mtime_is_set(entry)) dir.times[1] = {archive_entry_mtime(entry), archive_entry_mtime_nsec(entry)};
                existing_dirs_.push_back(std::move(dir));
            }
        } else {
            forget(path);
        }
        archive_entry_copy_pathname(entry, path.c_str());

        bool warned = false;
        int r = archive_write_header(disk_.get(), entry);
        if (r == ARCHIVE_FATAL) return fail(disk_.get(), name);
        if (r < ARCHIVE_WARN) {
            failed(name, archive_message(disk_.get()));
            return {};
        }
        if (r == ARCHIVE_WARN) {
            warn(name + ": " + archive_message(disk_.get()));
            warned = true;
        }
        if (archive_entry_size(entry) > 0) {
            for (;;) {
                const void* block = nullptr;
                std::size_t block_bytes = 0;
                la_int64_t offset = 0;
                r = archive_read_data_block(in_.get(), &block, &block_bytes, &offset);
                if (r == ARCHIVE_EOF) break;
                if (r < ARCHIVE_WARN) return fail(in_.get(), "read data of " + name);
                if (archive_write_data_block(disk_.get(), block, block_bytes, offset) < 0) {
                    if (archive_errno(disk_.get()) == ENOSPC) return fail(disk_.get(), name);
                    failed(name, archive_message(disk_.get()));
                    static_cast<void>(archive_write_finish_entry(disk_.get()));
                    return {};  // the rest of its data is skipped by the next read_next_header
                }
                stats_.data_bytes += block_bytes;
            }
        }
        // Xattrs, ACLs, times and flags of non-directories are set here; a refusal is a warning.
        r = archive_write_finish_entry(disk_.get());
        if (r == ARCHIVE_FATAL) return fail(disk_.get(), name);
        if (r < ARCHIVE_OK && !warned) warn(name + ": " + archive_message(disk_.get()));
        ++stats_.entries;
        return {};
    }

    result<void> fail(archive* a, const std::string& what) {
        return error{make_error_code(errc::archive_failed), what + ": " + archive_message(a)};
    }
    void refuse(const std::string& name, const std::string& why) {
        if (stats_.refused++ == 0) first_refused_ = name + " (" + why + ")";
        log("refused " + name + ": " + why);
    }
    void failed(const std::string& name, const std::string& why) {
        if (stats_.failed++ == 0) first_failed_ = name + " (" + why + ")";
        log("failed " + name + ": " + why);
    }
    void warn(const std::string& line) {
        ++stats_.warnings;
        log("warning: " + line);
    }
    void log(const std::string& line) {
        if (options_.log) options_.log(line);
    }

    const extract_options& options_;
    extract_stats& stats_;
    std::string root_;  // canonical target root without a trailing slash ("" for "/")
    std::string first_refused_, first_failed_;
    // Paths below the root found to be real directories (lstat) and not replaced since: the
    // parents of the next entries, which are mostly the same few, are looked at once each.
    std::set<std::string, std::less<>> checked_dirs_;
    std::vector<existing_dir> existing_dirs_;  // in stream order, parents first
    detail::read_archive in_;
    detail::write_archive disk_;
};

}  // namespace

result<void> extract_tree(int in_fd, const std::filesystem::path& target_root, const extract_options& options,
                          extract_stats& stats) {
    tree_extractor extractor{options, stats};
    return extractor.run(in_fd, target_root);
}

}  // namespace kaclone::image
