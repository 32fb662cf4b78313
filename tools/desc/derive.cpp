// Describing an existing disk: the pure describe() and the libfdisk/libblkid/libmount probes.
#include <kaclone/desc_derive.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <blkid/blkid.h>
#include <libfdisk/libfdisk.h>
#include <libmount/libmount.h>

#include <kaclone/unique_fd.hpp>

namespace kaclone::desc {
namespace {

namespace fs = std::filesystem;

constexpr std::array<std::string_view, 9> known_filesystems{
    "ext2", "ext3", "ext4", "xfs", "btrfs", "vfat", "swap", "jfs", "reiserfs"};

std::string upper(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return out;
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

std::string type_of(const partition_facts& p, table_kind table) {
    if (table == table_kind::gpt) {
        const std::string guid = upper(p.gpt_type);
        for (const char* name : {"linux", "swap", "esp", "bios"})
            if (gpt_type_guid(name) == guid) return name;
        return guid;
    }
    if (p.extended) return "extended";
    switch (p.mbr_type) {
        case 0x83:
            return "linux";
        case 0x82:
            return "swap";
        case 0x05:
        case 0x0f:
        case 0x85:
            return "extended";
        default:
            break;
    }
    static constexpr std::string_view digits = "0123456789abcdef";
    return std::string{"type"} + digits[p.mbr_type >> 4] + digits[p.mbr_type & 0xf];
}

// Whether `spec` is still a valid line of a `table` description: parse() of its printed form
// is the one judge of what a column may hold, so describe() and the format cannot drift apart.
bool line_ok(const partition_spec& spec, table_kind table) {
    desc_file probe;
    probe.table = table;
    if (spec.place == placement::logical)
        probe.partitions.push_back(
            {placement::primary, "extended", size_spec::fill(), "", "", "", {}, 1});
    partition_spec copy = spec;
    copy.line = static_cast<int>(probe.partitions.size()) + 1;
    probe.partitions.push_back(copy);
    auto back = parse(print(probe), "");
    return back.has_value() && back->partitions.back().mount == spec.mount &&
           back->partitions.back().label == spec.label;
}

std::string where_of(int number) { return "partition " + std::to_string(number) + ": "; }

// How an fstab tag's value compares: UUIDs in any case, labels exactly.
enum class letters { exact, any_case };

bool is_under(std::string_view path, std::string_view root) {
    if (root == "/") return path.starts_with('/');
    return path == root ||
           (path.starts_with(root) && path.size() > root.size() && path[root.size()] == '/');
}

}  // namespace

std::string partition_name(std::string_view disk, int number) {
    std::string out(disk);
    if (!out.empty() && std::isdigit(static_cast<unsigned char>(out.back()))) out += 'p';
    return out + std::to_string(number);
}

derived describe(const table_facts& table, fill_last fill) {
    std::vector<partition_facts> parts = table.partitions;
    std::stable_sort(parts.begin(), parts.end(),
                     [](const auto& a, const auto& b) { return a.number < b.number; });
    derived out;
    out.file.table = table.table;
    out.file.label_line = table.table == table_kind::gpt;
    std::set<std::string> mounts;
    const int first_line = out.file.label_line ? 2 : 1;
    for (const partition_facts& p : parts) {
        const std::string at = where_of(p.number);
        partition_spec spec;
        spec.line = first_line + static_cast<int>(out.file.partitions.size());
        spec.place = p.logical ? placement::logical : placement::primary;
        spec.type = type_of(p, table.table);
        std::uint64_t bytes = p.size_bytes / 1024 * 1024;
        if (bytes != p.size_bytes)
            out.notes.push_back(at + "its size of " + std::to_string(p.size_bytes) +
                                " bytes is not a whole number of KiB; rounded down");
        if (bytes == 0) bytes = 1024;
        spec.size = size_spec::of_bytes(bytes);
        if (spec.is_extended()) {
            if (p.boot)
                out.notes.push_back(at + "the boot flag of an extended partition is left out");
            out.file.partitions.push_back(std::move(spec));
            continue;
        }

        if (p.boot) spec.flags.push_back("boot");
        if (spec.type == "esp") spec.flags.push_back("esp");
        if (spec.type == "bios") spec.flags.push_back("bios_grub");

        const bool known = std::find(known_filesystems.begin(), known_filesystems.end(), p.fs) !=
                           known_filesystems.end();
        if (!p.fs.empty() && !known) {
            out.notes.push_back(at + "filesystem " + p.fs +
                                " is not one the format knows; fs= left out");
        } else if (!p.fs.empty()) {
            spec.fs = p.fs;
            if (!line_ok(spec, table.table)) {
                out.notes.push_back(at + "filesystem " + p.fs + " does not suit type " + spec.type +
                                    "; fs= left out");
                spec.fs.clear();
            }
        }
        if (!p.label.empty()) {
            spec.label = p.label;
            if (!line_ok(spec, table.table)) {
                out.notes.push_back(at + "label '" + p.label +
                                    "' holds a blank, '#' or control character; label= left out");
                spec.label.clear();
            }
        }
        if (!p.mount.empty()) {
            spec.mount = p.mount;
            if (!line_ok(spec, table.table)) {
                out.notes.push_back(at + "mount point " + p.mount +
                                    " cannot be written; mount= left out");
                spec.mount.clear();
            } else if (!mounts.insert(spec.mount).second) {
                out.notes.push_back(at + "mount point " + p.mount +
                                    " is already used by an earlier partition; mount= left out");
                spec.mount.clear();
            }
        }
        out.file.partitions.push_back(std::move(spec));
    }

    // layout numbers partitions in file order: 1, 2, ... and 5, 6, ... for logical ones.
    int next_primary = 1, next_logical = 5;
    for (const partition_facts& p : parts) {
        int& expected = p.logical ? next_logical : next_primary;
        if (p.number != expected) {
            out.notes.push_back(where_of(p.number) +
                                "the partition numbers have a gap; layout numbers them " +
                                (p.logical ? "5, 6, ..." : "1, 2, ...") + " in this order");
            break;
        }
        ++expected;
    }

    if (fill == fill_last::yes) {
        for (const placement place : {placement::primary, placement::logical}) {
            for (auto it = out.file.partitions.rbegin(); it != out.file.partitions.rend(); ++it) {
                if (it->place != place) continue;
                it->size = size_spec::fill();
                break;
            }
        }
    }
    return out;
}

std::string find_mount_point(const partition_identity& id, std::span<const mount_entry> running,
                             std::span<const mount_entry> fstab, std::string_view root) {
    std::string tidy_root(root);
    while (tidy_root.size() > 1 && tidy_root.back() == '/') tidy_root.pop_back();
    for (const mount_entry& m : running) {
        if (!m.whole) continue;
        const bool same_devno = id.major != 0 && m.major == id.major && m.minor == id.minor;
        if (!same_devno && m.source != id.node) continue;
        if (tidy_root.empty()) return m.target;
        if (!is_under(m.target, tidy_root)) continue;
        if (tidy_root == "/" || m.target == tidy_root) return tidy_root == "/" ? m.target : "/";
        return m.target.substr(tidy_root.size());
    }
    for (const mount_entry& m : fstab) {
        const std::string_view s = m.source;
        const auto tag = [&](std::string_view name, const std::string& value, letters c) {
            if (value.empty() || !s.starts_with(name)) return false;
            const std::string_view v = s.substr(name.size());
            return c == letters::any_case ? lower(v) == lower(value) : v == value;
        };
        if ((!id.node.empty() && s == id.node) || tag("UUID=", id.uuid, letters::any_case) ||
            tag("LABEL=", id.label, letters::exact) ||
            tag("PARTUUID=", id.partuuid, letters::any_case))
            return m.target;
    }
    return {};
}

// ---- The system side: libfdisk, libblkid, libmount, sysfs ----

namespace {

struct fdisk_context_free {
    void operator()(fdisk_context* c) const noexcept { fdisk_unref_context(c); }
};
struct fdisk_table_free {
    void operator()(fdisk_table* t) const noexcept { fdisk_unref_table(t); }
};
struct fdisk_iter_free {
    void operator()(fdisk_iter* i) const noexcept { fdisk_free_iter(i); }
};
struct blkid_probe_free {
    void operator()(blkid_struct_probe* p) const noexcept { blkid_free_probe(p); }
};
struct mnt_table_free {
    void operator()(libmnt_table* t) const noexcept { mnt_unref_table(t); }
};
struct mnt_iter_free {
    void operator()(libmnt_iter* i) const noexcept { mnt_free_iter(i); }
};

std::string read_line(const fs::path& p) {
    std::ifstream in(p);
    std::string line;
    std::getline(in, line);
    return line;
}

// "259:3" from sysfs -> major, minor; false when the file is missing or malformed.
bool read_devno(const fs::path& p, unsigned& major_out, unsigned& minor_out) {
    return std::sscanf(read_line(p).c_str(), "%u:%u", &major_out, &minor_out) == 2;
}

std::string resolved(const char* path) {
    if (path == nullptr) return {};
    if (path[0] != '/') return path;
    std::error_code ec;
    const fs::path canonical = fs::canonical(path, ec);
    return ec ? std::string(path) : canonical.string();
}

struct probed {
    std::string type, label, uuid;
};

std::string lookup(blkid_probe pr, const char* name) {
    const char* data = nullptr;
    std::size_t len = 0;
    if (blkid_probe_lookup_value(pr, name, &data, &len) != 0 || data == nullptr) return {};
    return std::string(data);  // NUL-terminated; `len` counts the NUL
}

probed probe_values(blkid_probe pr) {
    blkid_probe_enable_superblocks(pr, 1);
    blkid_probe_set_superblocks_flags(pr,
                                      BLKID_SUBLKS_TYPE | BLKID_SUBLKS_LABEL | BLKID_SUBLKS_UUID);
    blkid_probe_enable_partitions(pr, 0);
    probed out;
    if (blkid_do_safeprobe(pr) != 0) return out;  // 1 nothing, -2 ambiguous, -1 error
    out.type = lookup(pr, "TYPE");
    out.label = lookup(pr, "LABEL");
    out.uuid = lookup(pr, "UUID");
    return out;
}

// The filesystem on the partition device `node` (coherent with what a mounted filesystem and
// mkfs wrote through it), or on `disk_fd` at the partition's place.
probed probe_partition(const std::string& node, int disk_fd, std::uint64_t offset,
                       std::uint64_t size) {
    if (!node.empty()) {
        std::unique_ptr<blkid_struct_probe, blkid_probe_free> pr{
            blkid_new_probe_from_filename(node.c_str())};
        if (pr) return probe_values(pr.get());
    }
    std::unique_ptr<blkid_struct_probe, blkid_probe_free> pr{blkid_new_probe()};
    if (!pr) return {};
    // The disk's page cache may hold pages older than what was written through a partition
    // device (each block device has its own); drop the clean ones so the probe reads the disk.
    ::posix_fadvise(disk_fd, static_cast<off_t>(offset), static_cast<off_t>(size),
                    POSIX_FADV_DONTNEED);
    if (blkid_probe_set_device(pr.get(), disk_fd, static_cast<blkid_loff_t>(offset),
                               static_cast<blkid_loff_t>(size)) != 0)
        return {};
    return probe_values(pr.get());
}

// Which format read_table() parses.
enum class table_format { mountinfo, fstab };

result<std::vector<mount_entry>> read_table(const std::string& path, table_format format) {
    const bool fstab = format == table_format::fstab;
    std::unique_ptr<libmnt_table, mnt_table_free> tb{mnt_new_table()};
    std::unique_ptr<libmnt_iter, mnt_iter_free> itr{mnt_new_iter(MNT_ITER_FORWARD)};
    if (!tb || !itr) return sys_error(ENOMEM, "libmount");
    const int rc = fstab ? mnt_table_parse_fstab(tb.get(), path.c_str())
                         : mnt_table_parse_file(tb.get(), path.c_str());
    if (rc != 0) return sys_error(rc < 0 ? -rc : EINVAL, "read " + path);
    std::vector<mount_entry> out;
    libmnt_fs* f = nullptr;
    while (mnt_table_next_fs(tb.get(), itr.get(), &f) == 0) {
        mount_entry m;
        const char* tag_name = nullptr;
        const char* tag_value = nullptr;
        if (mnt_fs_get_tag(f, &tag_name, &tag_value) == 0)
            m.source = std::string(tag_name) + "=" + tag_value;
        else
            m.source = resolved(mnt_fs_get_srcpath(f));
        const char* target = mnt_fs_get_target(f);
        if (target == nullptr || target[0] != '/') continue;  // swap lines ("none", "swap")
        m.target = target;
        if (!fstab) {
            const dev_t devno = mnt_fs_get_devno(f);
            m.major = ::major(devno);
            m.minor = ::minor(devno);
            const char* fs_root = mnt_fs_get_root(f);
            m.whole = fs_root == nullptr || std::string_view(fs_root) == "/";
        }
        out.push_back(std::move(m));
    }
    return out;
}

// The name in /sys/class/block of the device `devno` ("sda2", "dm-0"), or "".
std::string block_name(dev_t devno) {
    std::error_code ec;
    const fs::path link = fs::read_symlink(
        "/sys/dev/block/" + std::to_string(::major(devno)) + ":" + std::to_string(::minor(devno)),
        ec);
    return ec ? std::string{} : link.filename().string();
}

// The whole disks below the block device `name`: itself, the disk of a partition, or the disks
// under each slave of a device mapper or md device.
void disks_below(const std::string& name, std::vector<std::string>& out, int depth = 0) {
    if (name.empty() || depth > 16) return;
    const fs::path sys = fs::path("/sys/class/block") / name;
    std::error_code ec;
    bool has_slaves = false;
    for (const auto& e : fs::directory_iterator(sys / "slaves", ec)) {
        has_slaves = true;
        disks_below(e.path().filename().string(), out, depth + 1);
    }
    if (has_slaves) return;
    unsigned maj = 0, min = 0;
    std::string disk = name;
    if (read_devno(sys / "dev", maj, min)) {
        std::array<char, 256> whole{};
        dev_t whole_devno = 0;
        if (blkid_devno_to_wholedisk(makedev(maj, min), whole.data(), whole.size(), &whole_devno) ==
            0)
            disk = whole.data();
    }
    const std::string path = "/dev/" + disk;
    if (std::find(out.begin(), out.end(), path) == out.end()) out.push_back(path);
}

}  // namespace

result<std::vector<mount_entry>> running_mounts() {
    return read_table("/proc/self/mountinfo", table_format::mountinfo);
}

result<std::vector<std::string>> root_disks() {
    auto mounts = running_mounts();
    if (!mounts) return std::move(mounts).error();
    const auto root = std::find_if(mounts->rbegin(), mounts->rend(),
                                   [](const mount_entry& m) { return m.target == "/"; });
    if (root == mounts->rend())
        return error{make_error_code(errc::root_not_on_disk),
                     "no mount at / in /proc/self/mountinfo"};
    dev_t devno = makedev(root->major, root->minor);
    struct stat st {};
    if (root->source.starts_with('/') && ::stat(root->source.c_str(), &st) == 0 &&
        S_ISBLK(st.st_mode))
        devno = st.st_rdev;  // btrfs reports an anonymous device number in mountinfo
    std::vector<std::string> out;
    if (::major(devno) != 0) disks_below(block_name(devno), out);
    if (out.empty())
        return error{make_error_code(errc::root_not_on_disk), "/ is mounted from " + root->source};
    return out;
}

result<derived> derive(const derive_options& options) {
    std::string disk = options.disk;
    if (disk.empty()) {
        auto roots = root_disks();
        if (!roots) return std::move(roots).error();
        disk = roots->front();
    }

    std::unique_ptr<fdisk_context, fdisk_context_free> cxt{fdisk_new_context()};
    if (!cxt) return sys_error(ENOMEM, "libfdisk");
    if (const int rc = fdisk_assign_device(cxt.get(), disk.c_str(), 1); rc < 0) {
        // libfdisk says EINVAL for what it cannot read as a disk (a file shorter than a sector).
        if (rc == -EINVAL) return error{make_error_code(errc::no_partition_table), disk};
        return sys_error(-rc, "open " + disk);
    }
    if (!fdisk_has_label(cxt.get()) ||
        !(fdisk_is_label(cxt.get(), DOS) || fdisk_is_label(cxt.get(), GPT))) {
        std::string what = disk;
        if (fdisk_has_label(cxt.get()))
            what += " (a " +
                    std::string(fdisk_label_get_name(fdisk_get_label(cxt.get(), nullptr))) +
                    " table)";
        return error{make_error_code(errc::no_partition_table), what};
    }
    const bool gpt = fdisk_is_label(cxt.get(), GPT);
    const std::uint64_t sector = fdisk_get_sector_size(cxt.get());

    std::string dos_id;  // "1c6294d0": the first half of a dos PARTUUID
    if (!gpt) {
        char* id = nullptr;
        if (fdisk_get_disklabel_id(cxt.get(), &id) == 0 && id != nullptr) {
            dos_id = lower(std::string_view(id).starts_with("0x") ? id + 2 : id);
            std::free(id);
        }
    }

    fdisk_table* raw_table = nullptr;
    if (const int rc = fdisk_get_partitions(cxt.get(), &raw_table); rc < 0)
        return sys_error(-rc, "read the partition table of " + disk);
    std::unique_ptr<fdisk_table, fdisk_table_free> tb{raw_table};
    std::unique_ptr<fdisk_iter, fdisk_iter_free> itr{fdisk_new_iter(FDISK_ITER_FORWARD)};

    auto running = running_mounts();
    if (!running) return std::move(running).error();
    const std::string fstab_path =
        options.root.empty() ? "/etc/fstab" : options.root + "/etc/fstab";
    std::vector<mount_entry> fstab;
    if (::access(fstab_path.c_str(), R_OK) == 0) {
        auto lines = read_table(fstab_path, table_format::fstab);
        if (lines) fstab = std::move(*lines);
    }

    auto disk_fd = open_fd(disk, O_RDONLY);
    if (!disk_fd) return std::move(disk_fd).error();
    struct stat disk_stat {};
    const bool block = ::fstat(disk_fd->get(), &disk_stat) == 0 && S_ISBLK(disk_stat.st_mode);
    const std::string disk_name = block ? block_name(disk_stat.st_rdev) : std::string{};

    table_facts facts;
    facts.table = gpt ? table_kind::gpt : table_kind::dos;
    fdisk_partition* pa = nullptr;
    while (fdisk_table_next_partition(tb.get(), itr.get(), &pa) == 0) {
        if (!fdisk_partition_has_partno(pa) || !fdisk_partition_has_start(pa) ||
            !fdisk_partition_has_size(pa))
            continue;
        partition_facts p;
        const std::size_t partno = fdisk_partition_get_partno(pa);
        p.number = static_cast<int>(partno) + 1;
        p.start_bytes = fdisk_partition_get_start(pa) * sector;
        p.size_bytes = fdisk_partition_get_size(pa) * sector;
        p.extended = !gpt && fdisk_partition_is_container(pa);
        p.logical = !gpt && fdisk_partition_is_nested(pa);
        if (fdisk_parttype* t = fdisk_partition_get_type(pa)) {
            if (gpt) {
                const char* s = fdisk_parttype_get_string(t);
                p.gpt_type = s ? s : "";
            } else {
                p.mbr_type = static_cast<std::uint8_t>(fdisk_parttype_get_code(t));
            }
        }
        if (gpt) {
            std::uint64_t attrs = 0;
            if (fdisk_gpt_get_partition_attrs(cxt.get(), partno, &attrs) == 0)
                p.boot = (attrs & (std::uint64_t{1} << 2)) != 0;  // legacy BIOS bootable
        } else {
            p.boot = fdisk_partition_is_bootable(pa) != 0;
        }

        if (!p.extended) {
            partition_identity id;
            std::string node;
            if (!disk_name.empty()) {
                const std::string name = partition_name(disk_name, p.number);
                id.node = "/dev/" + name;
                if (read_devno(fs::path("/sys/class/block") / name / "dev", id.major, id.minor)) {
                    struct stat st {};
                    if (::stat(id.node.c_str(), &st) == 0 && S_ISBLK(st.st_mode) &&
                        st.st_rdev == makedev(id.major, id.minor))
                        node = id.node;
                }
            }
            const probed found = probe_partition(node, disk_fd->get(), p.start_bytes, p.size_bytes);
            p.fs = found.type;
            p.label = found.label;
            id.uuid = found.uuid;
            id.label = found.label;
            if (gpt) {
                const char* uuid = fdisk_partition_get_uuid(pa);
                id.partuuid = uuid ? uuid : "";
            } else if (!dos_id.empty()) {
                std::array<char, 8> n{};
                std::snprintf(n.data(), n.size(), "-%02x", p.number);
                id.partuuid = dos_id + n.data();
            }
            p.mount = find_mount_point(id, *running, fstab, options.root);
        }
        facts.partitions.push_back(std::move(p));
    }
    return describe(facts, options.fill);
}

}  // namespace kaclone::desc
