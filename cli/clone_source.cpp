// serve --disk: the manifest of the golden disk and the bundle writer (see clone_source.hpp).
#include "clone_source.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <kaclone/bundle.hpp>
#include <kaclone/desc.hpp>
#include <kaclone/desc_derive.hpp>
#include <kaclone/units.hpp>
#include <kaclone/error_category.hpp>
#include <kaclone/fixup.hpp>

namespace kaclone::cli {
namespace {

// What serve --disk refuses: the golden disk as it is would give broken clones.
enum class clone_errc { refused = 1 };
const char* describe(clone_errc) noexcept { return "refused before any node was touched"; }
const std::error_category& clone_category() noexcept {
    static const enum_category<clone_errc> instance{"kaclone.clone", describe};
    return instance;
}

error invalid(std::string what) { return error{{static_cast<int>(clone_errc::refused), clone_category()}, std::move(what)}; }

result<std::string> read_text(const std::string& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    if (!in) return error{std::error_code(errno != 0 ? errno : EIO, std::system_category()), "read " + path};
    return text.str();
}

// Whether `path` is `dir` or below it (both absolute and normal).
bool is_below(const std::string& path, const std::string& dir) {
    if (dir == "/") return path.starts_with("/");
    return path == dir || path.starts_with(dir + "/");
}

std::string joined(const std::string& root, const std::string& inside) {
    if (root == "/") return inside;
    return inside == "/" ? root : root + inside;
}

// The bytes in use on the filesystem holding `dir` (0 when unknown).
std::uint64_t used_bytes(const std::string& dir) {
    struct statvfs st {};
    if (::statvfs(dir.c_str(), &st) != 0) return 0;
    return (static_cast<std::uint64_t>(st.f_blocks) - st.f_bfree) * st.f_frsize;
}

result<std::uint64_t> device_bytes(const std::string& node) {
    unique_fd fd{::open(node.c_str(), O_RDONLY | O_CLOEXEC)};
    if (!fd) return last_sys_error("open " + node);
    std::uint64_t bytes = 0;
    if (::ioctl(fd.get(), BLKGETSIZE64, &bytes) != 0) return last_sys_error("size of " + node);
    return bytes;
}

// The partition number of a --raw value: "3", "sda3" or "/dev/sda3" for disk /dev/sda.
result<int> partition_number(const std::string& value, const std::string& disk) {
    const std::string base = std::filesystem::path(disk).filename().string();
    for (int n = 1; n <= 128; ++n) {
        const std::string name = desc::partition_name(base, n);
        if (value == std::to_string(n) || value == name || value == "/dev/" + name) return n;
    }
    return invalid("--raw " + value + ": not a partition of " + disk + " (give its number, e.g. --raw 3)");
}

}  // namespace

std::string disk_path(const std::string& disk) { return disk.find('/') == std::string::npos ? "/dev/" + disk : disk; }

result<disk_source> disk_source::prepare(const disk_source_options& options, const image::log_fn& log) {
    disk_source source;
    source.state_ = std::make_unique<shared>();
    shared& s = *source.state_;
    manifest::manifest& m = s.manifest;
    m.session = options.session;
    const std::string disk = disk_path(options.disk);
    std::error_code ec;
    const std::string root = std::filesystem::weakly_canonical(options.root, ec).string();
    if (ec || !std::filesystem::is_directory(root)) return invalid("--root " + options.root + " is not a directory");

    // Only the filesystems of `disk` are ever sent; an --exclude-disk says so for another disk
    // (the old ka-d.sh option) and is refused for the disk being cloned.
    for (const auto& other : options.exclude_disks) {
        const std::string path = disk_path(other);
        struct stat st {};
        if (::stat(path.c_str(), &st) != 0) return last_sys_error("--exclude-disk " + path);
        if (path == disk) return invalid("--exclude-disk " + other + " is the disk being cloned (--disk)");
        log("--exclude-disk " + path + ": its filesystems are not sent (only those of " + disk + " are)");
    }

    // The description: given, or derived from the disk with the mount points below root.
    desc::desc_file file;
    std::string desc_name = options.desc_file;
    if (!options.desc_file.empty()) {
        auto text = read_text(options.desc_file);
        if (!text) return std::move(text).error();
        auto parsed = desc::parse(*text, options.desc_file);
        if (!parsed) return std::move(parsed).error();
        file = *std::move(parsed);
    } else {
        auto derived = desc::derive({disk, options.fill_last ? desc::fill_last::yes : desc::fill_last::no, root == "/" ? "" : root});
        if (!derived) return std::move(derived).error();
        for (const auto& note : derived->notes) log("description of " + disk + ": " + note);
        file = std::move(derived->file);
        desc_name = "the description derived from " + disk;
    }
    m.desc = desc::print(file);

    // The filesystems of the disk and where they are mounted below root.
    auto probe = fixup::probe_disk(disk, root);
    if (!probe) return std::move(probe).error();
    std::vector<int> raw_numbers;
    for (const auto& value : options.raw) {
        auto n = partition_number(value, disk);
        if (!n) return std::move(n).error();
        raw_numbers.push_back(*n);
    }
    std::vector<const fixup::new_filesystem*> trees;
    for (const auto& f : probe->filesystems) {
        const bool raw = std::find(raw_numbers.begin(), raw_numbers.end(), f.number) != raw_numbers.end();
        if (!f.mount.empty() && raw)
            return invalid("--raw " + std::to_string(f.number) + ": " + f.node + " is mounted at " + joined(root, f.mount) +
                           "; a mounted filesystem is sent as a tree (unmount it to send it byte for byte)");
        if (!f.mount.empty()) {
            trees.push_back(&f);
        } else if (!raw && f.type != "swap" && !f.type.empty()) {
            return invalid(f.node + " holds a filesystem (" + f.type + ") that is not mounted below " + root +
                           "; mount it there (the clone would get it empty), or send it byte for byte with --raw " +
                           std::to_string(f.number));
        }
    }
    if (std::none_of(trees.begin(), trees.end(), [](const auto* f) { return f->mount == "/"; }) && raw_numbers.empty())
        return invalid("no filesystem of " + disk + " is mounted at " + root + " (--root): nothing to clone");
    // Parents before children, so `/` is stream 1.
    std::sort(trees.begin(), trees.end(), [](const auto* a, const auto* b) { return a->mount < b->mount; });

    // Each exclude belongs to the deepest tree that holds it.
    std::vector<std::vector<std::string>> excludes(trees.size()), host_excludes(trees.size());
    for (const auto& e : options.excludes) {
        const std::string path = std::filesystem::path(e).lexically_normal().string();
        if (path.empty() || path[0] != '/')
            return invalid("--exclude " + e + ": give the directory as the golden system sees it, e.g. /tmp");
        std::size_t best = trees.size();
        for (std::size_t i = 0; i < trees.size(); ++i)
            if (is_below(path, trees[i]->mount) && (best == trees.size() || trees[i]->mount.size() > trees[best]->mount.size()))
                best = i;
        if (best == trees.size()) return invalid("--exclude " + e + " is on no filesystem of " + disk + " mounted below " + root);
        if (!std::filesystem::is_directory(joined(root, path)))
            return invalid("--exclude " + e + ": " + joined(root, path) + " is not a directory");
        excludes[best].push_back(path);
        host_excludes[best].push_back(joined(root, path));
    }

    // Every tree needs its mount point in the description, or the node has nowhere to put it.
    std::uint32_t id = 1;
    for (std::size_t i = 0; i < trees.size(); ++i) {
        const auto& f = *trees[i];
        const auto part = std::find_if(file.partitions.begin(), file.partitions.end(), [&](const auto& p) { return p.mount == f.mount; });
        if (part == file.partitions.end())
            return invalid(desc_name + " has no partition with mount=" + f.mount + ", but the golden " + f.mount + " is on " + f.node);
        const std::uint64_t used = used_bytes(joined(root, f.mount));
        // A size in bytes is the same on every node: one too small for the data fails here, before
        // any node is touched (percentages and fill are checked by each node on its own disk).
        // With excludes the data sent is less than what is in use, by an amount not known here.
        if (part->size.kind == desc::size_kind::bytes && part->size.bytes < used && excludes[i].empty())
            return invalid(desc_name + ":" + std::to_string(part->line) + ": the partition for " + f.mount + " is " +
                           format_bytes(part->size.bytes) + ", but the golden " + f.mount + " has " + format_bytes(used) +
                           " in use: it cannot fit");
        manifest::stream_entry e;
        e.kind = manifest::stream_kind::tree;
        e.id = id++;
        e.partition = std::to_string(f.number);
        e.mount = f.mount;
        e.fs = f.type;
        e.label = f.label;
        e.uuid = f.uuid;
        e.estimate = used;
        e.excludes = excludes[i];
        source.expected_ += e.estimate;
        log("stream " + std::to_string(e.id) + ": " + f.mount + " from " + f.node + " (" + f.type + ", " +
            std::to_string(e.estimate >> 20) + " MiB used" + (e.excludes.empty() ? "" : ", " + std::to_string(e.excludes.size()) + " excluded") + ")");
        m.streams.push_back(std::move(e));
        s.tree_roots.push_back(joined(root, f.mount));
        s.raw_nodes.emplace_back();
        s.tree_excludes.push_back(host_excludes[i]);
    }
    for (int n : raw_numbers) {
        const std::string node = "/dev/" + desc::partition_name(std::filesystem::path(disk).filename().string(), n);
        auto bytes = device_bytes(node);
        if (!bytes) return std::move(bytes).error();
        manifest::stream_entry e;
        e.kind = manifest::stream_kind::raw;
        e.id = id++;
        e.partition = std::to_string(n);
        e.bytes = *bytes;
        for (const auto& f : probe->filesystems)
            if (f.number == n) e.fs = f.type;
        source.expected_ += e.bytes;
        log("stream " + std::to_string(e.id) + ": partition " + e.partition + " (" + node + ") byte for byte, " +
            std::to_string(e.bytes >> 20) + " MiB");
        m.streams.push_back(std::move(e));
        s.tree_roots.emplace_back();
        s.raw_nodes.push_back(node);
        s.tree_excludes.emplace_back();
    }
    if (!options.mbr_drive.empty() || !options.mbr_file.empty()) {
        result<image::mbr_boot_code> code = image::mbr_boot_code{};
        if (!options.mbr_file.empty()) {
            code = image::read_mbr_file(options.mbr_file);
        } else {
            unique_fd drive{::open(disk_path(options.mbr_drive).c_str(), O_RDONLY | O_CLOEXEC)};
            if (!drive) return last_sys_error("open " + disk_path(options.mbr_drive) + " (--mbr)");
            code = image::read_mbr(drive.get());
        }
        if (!code) return std::move(code).error();
        s.boot_code = *code;
        manifest::stream_entry e;
        e.kind = manifest::stream_kind::boot_code;
        e.id = id++;
        e.bytes = image::mbr_boot_code_bytes;
        log("stream " + std::to_string(e.id) + ": boot code (446 bytes) from " +
            (options.mbr_file.empty() ? disk_path(options.mbr_drive) : options.mbr_file));
        m.streams.push_back(std::move(e));
        s.tree_roots.emplace_back();
        s.raw_nodes.emplace_back();
        s.tree_excludes.emplace_back();
    }
    m.fixup.bootloader = options.bootloader;
    m.fixup.initrd_args = options.initrd_args;
    if (!options.hostnames_file.empty()) {
        auto text = read_text(options.hostnames_file);
        if (!text) return std::move(text).error();
        auto entries = fixup::parse_hostnames(*text, options.hostnames_file);
        if (!entries) return std::move(entries).error();
        m.hostnames = *text;
        if (!m.hostnames.empty() && m.hostnames.back() != '\n') m.hostnames += '\n';
    }
    return source;
}

disk_source::~disk_source() {
    if (thread_.joinable()) static_cast<void>(finish());
}

result<void> disk_source::start(const image::log_fn& log) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return last_sys_error("pipe for the bundle");
    read_ = unique_fd{fds[0]};
    unique_fd write_end{fds[1]};
    static_cast<void>(::fcntl(write_end.get(), F_SETPIPE_SZ, 1 << 20));
    state_->log = log;
    thread_ = std::thread([state = state_.get(), write_end = std::move(write_end)]() mutable {
        state->outcome = [&]() -> result<void> {
            image::bundle_writer out{write_end.get()};
            if (auto ok = out.start(); !ok) return ok;
            const std::string text = manifest::encode(state->manifest);
            if (auto ok = out.put(0, std::as_bytes(std::span(text.data(), text.size()))); !ok) return ok;
            if (auto ok = out.end(0); !ok) return ok;
            for (std::size_t i = 0; i < state->manifest.streams.size(); ++i) {
                const auto& e = state->manifest.streams[i];
                if (e.kind == manifest::stream_kind::tree) {
                    // write_tree into a pipe on a thread of its own; its bytes become records here.
                    int p[2];
                    if (::pipe2(p, O_CLOEXEC) != 0) return last_sys_error("pipe for " + e.mount);
                    unique_fd tree_read{p[0]}, tree_write{p[1]};
                    static_cast<void>(::fcntl(tree_write.get(), F_SETPIPE_SZ, 1 << 20));
                    image::write_options wo;
                    wo.excludes = {state->tree_excludes[i].begin(), state->tree_excludes[i].end()};
                    wo.log = state->log;
                    image::write_stats stats;
                    result<void> written;
                    std::thread writer([&] {
                        written = image::write_tree(state->tree_roots[i], wo, tree_write.get(), stats);
                        tree_write.reset();
                    });
                    auto copied = out.copy(e.id, tree_read.get());
                    tree_read.reset();  // a writer still running fails with EPIPE instead of blocking
                    writer.join();
                    if (!written) return error{written.error().code, e.mount + ": " + written.error().where};
                    if (!copied) return std::move(copied).error();
                    if (state->log)
                        state->log("sent " + e.mount + ": " + std::to_string(stats.entries) + " entries, " +
                                   std::to_string(*copied) + " bytes (" + std::to_string(stats.warnings) + " warnings, " +
                                   std::to_string(stats.sockets_skipped) + " sockets skipped)");
                } else if (e.kind == manifest::stream_kind::raw) {
                    unique_fd part{::open(state->raw_nodes[i].c_str(), O_RDONLY | O_CLOEXEC)};
                    if (!part) return last_sys_error("open " + state->raw_nodes[i]);
                    auto copied = out.copy(e.id, part.get());
                    if (!copied) return std::move(copied).error();
                } else {
                    if (auto ok = out.put(e.id, state->boot_code); !ok) return ok;
                }
                if (auto ok = out.end(e.id); !ok) return ok;
            }
            return {};
        }();
        write_end.reset();
    });
    return {};
}

result<void> disk_source::finish() {
    read_.reset();
    if (thread_.joinable()) thread_.join();
    return state_->outcome;
}

}  // namespace kaclone::cli
