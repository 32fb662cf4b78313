// Applying a plan to a disk: refusals first, then libfdisk, the kernel's partitions, mkfs, mounts.
#include <kaclone/layout_apply.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <thread>

#include <fcntl.h>
#include <linux/blkpg.h>
#include <linux/fs.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libfdisk/libfdisk.h>
#include <libmount/libmount.h>

#include <kaclone/child_process.hpp>
#include <kaclone/desc_derive.hpp>
#include <kaclone/error_category.hpp>
#include <kaclone/unique_fd.hpp>
#include <kaclone/units.hpp>

extern char** environ;

namespace kaclone::layout {
namespace {

namespace fs = std::filesystem;

const char* describe(errc e) noexcept {
    switch (e) {
        case errc::in_use:
            return "disk in use; unmount its filesystems, swapoff its swap and stop what holds "
                   "it first";
        case errc::holds_root:
            return "disk holds the running system";
        case errc::mkfs_missing:
            return "mkfs program not found in PATH";
        case errc::kernel_fs_missing:
            return "the running kernel cannot mount this filesystem (not in /proc/filesystems, "
                   "no module)";
        case errc::label_too_long:
            return "label too long for the filesystem";
        case errc::not_a_disk:
            return "not a whole-disk block device";
        case errc::table_write:
            return "cannot write the partition table";
        case errc::partition_node:
            return "cannot make the partition device";
        case errc::mkfs_failed:
            return "mkfs failed";
        case errc::mount_failed:
            return "mount failed";
    }
    return "unknown layout error";
}

error fail(errc e, std::string where) { return error{make_error_code(e), std::move(where)}; }

constexpr std::uint64_t mib = desc::mib_bytes;
constexpr auto node_wait = std::chrono::seconds(5);
constexpr auto node_poll = std::chrono::milliseconds(50);

struct tool_row {
    std::string_view fs, program, package;
    std::size_t max_label;
};
constexpr std::array<tool_row, 9> tools{{
    {"ext2", "mkfs.ext2", "e2fsprogs", 16},
    {"ext3", "mkfs.ext3", "e2fsprogs", 16},
    {"ext4", "mkfs.ext4", "e2fsprogs", 16},
    {"xfs", "mkfs.xfs", "xfsprogs", 12},
    {"btrfs", "mkfs.btrfs", "btrfs-progs", 255},
    {"vfat", "mkfs.vfat", "dosfstools", 11},
    {"swap", "mkswap", "util-linux", 16},
    {"jfs", "mkfs.jfs", "jfsutils", 16},
    {"reiserfs", "mkfs.reiserfs", "reiserfsprogs", 16},
}};

const tool_row* row_for(std::string_view fs) {
    const auto it =
        std::find_if(tools.begin(), tools.end(), [&](const auto& r) { return r.fs == fs; });
    return it == tools.end() ? nullptr : &*it;
}

std::string read_line(const fs::path& p) {
    std::ifstream in(p);
    std::string line;
    std::getline(in, line);
    return line;
}

std::string trimmed(std::string s) {
    while (!s.empty() && (s.back() == ' ' || s.back() == '\n' || s.back() == '\t')) s.pop_back();
    std::size_t i = 0;
    while (i < s.size() && s[i] == ' ') ++i;
    return s.substr(i);
}

bool read_devno(const fs::path& p, dev_t& out) {
    unsigned maj = 0, min = 0;
    if (std::sscanf(read_line(p).c_str(), "%u:%u", &maj, &min) != 2) return false;
    out = makedev(maj, min);
    return true;
}

std::string devno_text(dev_t d) {
    return std::to_string(::major(d)) + ":" + std::to_string(::minor(d));
}

// A partition the kernel has of a disk, from sysfs (start and size in 512-byte units there).
struct kernel_partition {
    int number = 0;
    std::string name;  // "loop0p1"
    dev_t devno = 0;
    std::uint64_t start_bytes = 0, size_bytes = 0;
};

std::vector<kernel_partition> kernel_partitions(const std::string& disk_name) {
    std::vector<kernel_partition> out;
    const fs::path sys = fs::path("/sys/class/block") / disk_name;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(sys, ec)) {
        if (!fs::exists(e.path() / "partition")) continue;
        kernel_partition k;
        k.name = e.path().filename().string();
        k.number = std::atoi(read_line(e.path() / "partition").c_str());
        read_devno(e.path() / "dev", k.devno);
        k.start_bytes = std::strtoull(read_line(e.path() / "start").c_str(), nullptr, 10) * 512;
        k.size_bytes = std::strtoull(read_line(e.path() / "size").c_str(), nullptr, 10) * 512;
        out.push_back(std::move(k));
    }
    std::sort(out.begin(), out.end(),
              [](const auto& a, const auto& b) { return a.number < b.number; });
    return out;
}

// The block device at `path`: its device number and sysfs name ("loop0").
struct block_device {
    dev_t devno = 0;
    std::string name;
};

result<block_device> whole_disk(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return last_sys_error("open " + path);
    if (!S_ISBLK(st.st_mode)) return fail(errc::not_a_disk, path + " (not a block device)");
    std::error_code ec;
    const fs::path link = fs::read_symlink("/sys/dev/block/" + devno_text(st.st_rdev), ec);
    if (ec)
        return fail(errc::not_a_disk,
                    path + " (no " + devno_text(st.st_rdev) + " in /sys/dev/block)");
    block_device out{st.st_rdev, link.filename().string()};
    if (fs::exists(fs::path("/sys/class/block") / out.name / "partition"))
        return fail(errc::not_a_disk, path + " (a partition; give the whole disk)");
    return out;
}

// /proc/swaps escapes blanks in names as \040 and so on.
std::string unescape_octal(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 3 < s.size()) {
            const std::string digits(s.substr(i + 1, 3));
            if (digits.size() == 3 && std::all_of(digits.begin(), digits.end(),
                                                  [](char c) { return c >= '0' && c <= '7'; })) {
                out += static_cast<char>(std::stoi(digits, nullptr, 8));
                i += 3;
                continue;
            }
        }
        out += s[i];
    }
    return out;
}

std::vector<std::string> active_swaps() {
    std::vector<std::string> out;
    std::ifstream in("/proc/swaps");
    std::string line;
    std::getline(in, line);  // the heading
    while (std::getline(in, line)) {
        const std::size_t end = line.find_first_of(" \t");
        if (end != 0) out.push_back(unescape_octal(line.substr(0, end)));
    }
    return out;
}

// What uses the disk `dev` or one of its partitions, in words, or "" when nothing does.
std::string usage_of(const std::string& path, const block_device& dev) {
    struct member {
        std::string node;  // "/dev/loop0p1"
        dev_t devno;
        std::string name;
    };
    std::vector<member> members{{path, dev.devno, dev.name}};
    for (const auto& k : kernel_partitions(dev.name))
        members.push_back({"/dev/" + k.name, k.devno, k.name});

    if (auto mounts = desc::running_mounts()) {
        for (const auto& m : *mounts) {
            for (const auto& mem : members) {
                const bool same = (m.major != 0 && makedev(m.major, m.minor) == mem.devno) ||
                                  m.source == mem.node;
                if (same) return mem.node + " is mounted on " + m.target;
            }
        }
    }
    for (const auto& swap : active_swaps()) {
        struct stat st {};
        const bool is_block = ::stat(swap.c_str(), &st) == 0 && S_ISBLK(st.st_mode);
        for (const auto& mem : members)
            if ((is_block && st.st_rdev == mem.devno) || swap == mem.node)
                return mem.node + " is in use as swap";
    }
    for (const auto& mem : members) {
        std::error_code ec;
        for (const auto& h :
             fs::directory_iterator(fs::path("/sys/class/block") / mem.name / "holders", ec))
            return mem.node + " is held by " + h.path().filename().string();
    }
    const int fd = ::open(path.c_str(), O_RDONLY | O_EXCL | O_CLOEXEC);
    if (fd < 0 && errno == EBUSY)
        return "it is open exclusively elsewhere: a mount in another mount namespace, md, LVM, ...";
    if (fd >= 0) ::close(fd);
    return {};
}

// Whether the running kernel can mount `fs`: it is registered, or a module for it exists (the
// kernel loads "fs-NAME" on the first mount).
bool kernel_knows(std::string_view fs_name) {
    {
        std::ifstream in("/proc/filesystems");
        std::string line;
        while (std::getline(in, line)) {
            const std::size_t tab = line.find_last_of(" \t");
            if (trimmed(line.substr(tab == std::string::npos ? 0 : tab + 1)) == fs_name)
                return true;
        }
    }
    struct utsname u {};
    if (::uname(&u) != 0) return false;
    const fs::path dir = fs::path("/lib/modules") / u.release;
    const std::string needle = "/" + std::string(fs_name) + ".ko";
    for (const char* index : {"modules.dep", "modules.builtin"}) {
        std::ifstream in(dir / index);
        std::string line;
        while (std::getline(in, line))
            if (line.find(needle) != std::string::npos) return true;
    }
    return false;
}

std::string at_line(const apply_options& options, const planned_partition& part) {
    return options.desc_name + ":" + std::to_string(part.line);
}

void say(const apply_options& options, const std::string& line) {
    if (options.log) options.log(line);
}

std::string node_of(const std::string& disk_name, int number) {
    return "/dev/" + desc::partition_name(disk_name, number);
}

// ---- libfdisk ----

struct fdisk_context_free {
    void operator()(fdisk_context* c) const noexcept { fdisk_unref_context(c); }
};
struct fdisk_partition_free {
    void operator()(fdisk_partition* p) const noexcept { fdisk_unref_partition(p); }
};
struct fdisk_parttype_free {
    void operator()(fdisk_parttype* t) const noexcept { fdisk_unref_parttype(t); }
};

// libfdisk reports problems through its ask callback; keep the last warning for the error.
int remember_warning(fdisk_context*, fdisk_ask* ask, void* data) {
    auto* last = static_cast<std::string*>(data);
    switch (fdisk_ask_get_type(ask)) {
        case FDISK_ASKTYPE_WARN:
        case FDISK_ASKTYPE_WARNX:
            if (const char* m = fdisk_ask_print_get_mesg(ask)) *last = m;
            return 0;
        case FDISK_ASKTYPE_INFO:
            return 0;
        default:
            return -EINVAL;  // a question: everything was given, nothing to ask
    }
}

error table_error(int rc, const std::string& what, const std::string& warning) {
    std::string where = what;
    if (!warning.empty()) where += " (" + warning + ")";
    return fail(errc::table_write,
                where + ": " + std::error_code(-rc, std::system_category()).message());
}

std::unique_ptr<fdisk_parttype, fdisk_parttype_free> type_of(fdisk_label* lb,
                                                             const planned_partition& part,
                                                             desc::table_kind table) {
    fdisk_parttype* t = nullptr;
    if (table == desc::table_kind::dos) {
        t = fdisk_label_get_parttype_from_code(lb, part.mbr_type);
        if (t == nullptr) t = fdisk_new_unknown_parttype(part.mbr_type, nullptr);
    } else {
        std::string guid = part.gpt_type;
        // The flags that are partition types on gpt (as parted has them).
        if (std::find(part.flags.begin(), part.flags.end(), "esp") != part.flags.end())
            guid = desc::gpt_type_guid("esp");
        if (std::find(part.flags.begin(), part.flags.end(), "bios_grub") != part.flags.end())
            guid = desc::gpt_type_guid("bios");
        t = fdisk_label_get_parttype_from_string(lb, guid.c_str());
        if (t == nullptr) t = fdisk_new_unknown_parttype(0, guid.c_str());
    }
    return std::unique_ptr<fdisk_parttype, fdisk_parttype_free>{t};
}

bool has_flag(const planned_partition& part, std::string_view flag) {
    return std::find(part.flags.begin(), part.flags.end(), flag) != part.flags.end();
}

result<void> write_table(const plan& p, int fd) {
    const std::string& path = p.disk.path;
    std::string warning;
    std::unique_ptr<fdisk_context, fdisk_context_free> cxt{fdisk_new_context()};
    if (!cxt) return sys_error(ENOMEM, "libfdisk");
    fdisk_set_ask(cxt.get(), remember_warning, &warning);
    // The plan's starts are on 1 MiB; so must be the first LBA libfdisk assumes, which also
    // places each logical partition's EBR 1 MiB before it (what the planner left room for).
    fdisk_save_user_grain(cxt.get(), mib);
    if (int rc = fdisk_assign_device_by_fd(cxt.get(), fd, path.c_str(), 0); rc < 0)
        return table_error(rc, "open " + path, warning);
    fdisk_disable_dialogs(cxt.get(), 1);
    const bool gpt = p.table == desc::table_kind::gpt;
    if (int rc = fdisk_create_disklabel(cxt.get(), gpt ? "gpt" : "dos"); rc < 0)
        return table_error(rc, "create a " + std::string(gpt ? "gpt" : "dos") + " table on " + path,
                           warning);
    fdisk_label* lb = fdisk_get_label(cxt.get(), nullptr);
    const std::uint64_t sector = fdisk_get_sector_size(cxt.get());

    for (const auto& part : p.partitions) {
        const std::string what = "add partition " + std::to_string(part.number) + " to " + path;
        std::unique_ptr<fdisk_partition, fdisk_partition_free> pa{fdisk_new_partition()};
        if (!pa) return sys_error(ENOMEM, "libfdisk");
        if (part.place == desc::placement::primary)
            fdisk_partition_set_partno(pa.get(), static_cast<std::size_t>(part.number - 1));
        fdisk_partition_set_start(pa.get(), part.start_bytes / sector);
        fdisk_partition_set_size(pa.get(), part.size_bytes / sector);
        fdisk_partition_size_explicit(pa.get(), 1);  // exactly this size, not rounded to the grain
        auto type = type_of(lb, part, p.table);
        if (!type) return sys_error(ENOMEM, "libfdisk");
        fdisk_partition_set_type(pa.get(), type.get());
        std::size_t partno = 0;
        if (int rc = fdisk_add_partition(cxt.get(), pa.get(), &partno); rc < 0)
            return table_error(rc, what, warning);
        if (partno != static_cast<std::size_t>(part.number - 1))
            return fail(errc::table_write,
                        what + " (libfdisk made it number " + std::to_string(partno + 1) + ")");
        if (has_flag(part, "boot")) {
            const int rc =
                gpt ? fdisk_gpt_set_partition_attrs(cxt.get(), partno, std::uint64_t{1} << 2)
                    : fdisk_toggle_partition_flag(cxt.get(), partno, DOS_FLAG_ACTIVE);
            if (rc < 0)
                return table_error(
                    rc, "set the boot flag of partition " + std::to_string(part.number), warning);
        }
    }
    if (int rc = fdisk_write_disklabel(cxt.get()); rc < 0)
        return table_error(rc, "write the table of " + path, warning);
    // BLKRRPART: fails while a partition is open, and on kernels without the table's parser it
    // succeeds but finds nothing; sync_kernel_partitions() deals with both.
    (void)fdisk_reread_partition_table(cxt.get());
    fdisk_deassign_device(cxt.get(), 0);  // fsync; `fd` stays ours
    return {};
}

// ---- the kernel's partitions and their nodes ----

result<void> blkpg(int fd, int op, int number, std::uint64_t start, std::uint64_t length,
                   const std::string& disk) {
    blkpg_partition part{};
    part.pno = number;
    part.start = static_cast<long long>(start);
    part.length = static_cast<long long>(length);
    blkpg_ioctl_arg arg{};
    arg.op = op;
    arg.datalen = sizeof part;
    arg.data = &part;
    if (::ioctl(fd, BLKPG, &arg) != 0)
        return fail(errc::partition_node,
                    std::string(op == BLKPG_ADD_PARTITION ? "add" : "delete") + " partition " +
                        std::to_string(number) + " of " + disk +
                        " (BLKPG): " + std::strerror(errno));
    return {};
}

// Makes the kernel's partitions of the disk match the plan: after BLKRRPART they usually do;
// what is missing or different is fixed with BLKPG (as partx does). Says which way it went.
result<void> sync_kernel_partitions(const plan& p, int fd, const std::string& disk_name,
                                    const apply_options& options) {
    std::map<int, std::pair<std::uint64_t, std::uint64_t>> want;
    for (const auto& part : p.partitions)
        want[part.number] = {part.start_bytes, kernel_size_bytes(part, p.disk.sector_bytes)};
    std::vector<int> added;
    for (const auto& k : kernel_partitions(disk_name)) {
        const auto it = want.find(k.number);
        if (it != want.end() && it->second == std::pair{k.start_bytes, k.size_bytes}) {
            want.erase(it);
            continue;
        }
        if (auto ok = blkpg(fd, BLKPG_DEL_PARTITION, k.number, 0, 0, p.disk.path); !ok) return ok;
    }
    for (const auto& [number, span] : want) {
        if (auto ok = blkpg(fd, BLKPG_ADD_PARTITION, number, span.first, span.second, p.disk.path);
            !ok)
            return ok;
        added.push_back(number);
    }
    if (added.empty()) {
        say(options, "kernel reread the partition table");
    } else {
        std::string list;
        for (int n : added) list += (list.empty() ? "" : " ") + std::to_string(n);
        say(options, "kernel partitions added with BLKPG: " + list);
    }
    return {};
}

// Waits (bounded) for udev to make /dev/NAME for each partition, then makes those still missing
// from the device number in sysfs: minimal systems and containers have no udev.
result<void> ensure_nodes(const plan& p, const std::string& disk_name,
                          const apply_options& options) {
    std::map<std::string, dev_t> want;
    for (const auto& part : p.partitions) {
        const std::string name = desc::partition_name(disk_name, part.number);
        dev_t devno = 0;
        if (!read_devno(fs::path("/sys/class/block") / name / "dev", devno))
            return fail(
                errc::partition_node,
                "/sys/class/block/" + name + "/dev (the kernel has no partition " + name + ")");
        want["/dev/" + name] = devno;
    }
    const auto ready = [](const std::string& node, dev_t devno) {
        struct stat st {};
        return ::stat(node.c_str(), &st) == 0 && S_ISBLK(st.st_mode) && st.st_rdev == devno;
    };
    const auto deadline = std::chrono::steady_clock::now() + node_wait;
    while (true) {
        for (auto it = want.begin(); it != want.end();)
            it = ready(it->first, it->second) ? want.erase(it) : std::next(it);
        if (want.empty() || std::chrono::steady_clock::now() >= deadline) break;
        std::this_thread::sleep_for(node_poll);
    }
    for (const auto& [node, devno] : want) {
        struct stat st {};
        if (::lstat(node.c_str(), &st) == 0) {
            if (!S_ISBLK(st.st_mode))
                return fail(errc::partition_node, node + " exists and is not a block device");
            ::unlink(node.c_str());  // a stale node of an earlier partition with another number
        }
        if (::mknod(node.c_str(), S_IFBLK | 0660, devno) != 0)
            return fail(errc::partition_node,
                        "mknod " + node + " " + devno_text(devno) + ": " + std::strerror(errno));
        say(options, "created " + node + " (" + devno_text(devno) +
                         ") with mknod: no udev made it within 5 s");
    }
    return {};
}

// ---- writing ----

result<void> zero(int fd, std::uint64_t offset, std::uint64_t bytes, const std::string& disk) {
    static const std::vector<char> zeros(mib, 0);
    while (bytes > 0) {
        const std::size_t n =
            static_cast<std::size_t>(std::min<std::uint64_t>(bytes, zeros.size()));
        const ssize_t w = ::pwrite(fd, zeros.data(), n, static_cast<off_t>(offset));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return last_sys_error("clear " + disk + " at " + std::to_string(offset));
        offset += static_cast<std::uint64_t>(w);
        bytes -= static_cast<std::uint64_t>(w);
    }
    return {};
}

// Runs `argv` (argv[0] found at `program`) with stdin from /dev/null and stdout + stderr into
// a pipe; the output, or an error with its exit status and last lines.
result<std::string> run(const std::string& program, const std::vector<std::string>& argv) {
    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return last_sys_error("pipe");
    unique_fd read_end{pipe_fds[0]}, write_end{pipe_fds[1]};
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, write_end.get(), 1);
    posix_spawn_file_actions_adddup2(&actions, write_end.get(), 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_t pid = 0;
    const int rc = ::posix_spawn(&pid, program.c_str(), &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    write_end.reset();
    if (rc != 0) return sys_error(rc, "run " + program);
    std::string output = read_all(read_end.get());
    const std::string how = exit_problem(reap_child(pid));
    if (how.empty()) return output;
    std::string cmd;
    for (const auto& a : argv) cmd += (cmd.empty() ? "" : " ") + a;
    const std::string tail = output_tail(std::move(output));
    return fail(errc::mkfs_failed, cmd + " (" + how + (tail.empty() ? "" : "; " + tail) + ")");
}

struct mnt_context_free {
    void operator()(libmnt_context* c) const noexcept { mnt_free_context(c); }
};

result<void> mount_one(const std::string& node, const std::string& dir, const std::string& fstype) {
    std::unique_ptr<libmnt_context, mnt_context_free> cxt{mnt_new_context()};
    if (!cxt) return sys_error(ENOMEM, "libmount");
    mnt_context_set_source(cxt.get(), node.c_str());
    mnt_context_set_target(cxt.get(), dir.c_str());
    mnt_context_set_fstype(cxt.get(), fstype.c_str());
    const int rc = mnt_context_mount(cxt.get());
    if (rc == 0 && mnt_context_get_status(cxt.get()) == 1) return {};
    std::array<char, 512> buf{};
    mnt_context_get_excode(cxt.get(), rc, buf.data(), buf.size());
    return fail(errc::mount_failed, "mount " + node + " on " + dir + " (" +
                                        (buf[0] ? buf.data() : "unknown error") + ")");
}

void unmount(const std::string& dir) {
    std::unique_ptr<libmnt_context, mnt_context_free> cxt{mnt_new_context()};
    if (!cxt) return;
    mnt_context_set_target(cxt.get(), dir.c_str());
    (void)mnt_context_umount(cxt.get());
}

std::string default_path() {
    const char* p = std::getenv("PATH");
    return p ? p : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
}

}  // namespace

const std::error_category& category() noexcept {
    static const enum_category<errc> instance{"kaclone.layout", describe};
    return instance;
}

std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), category()}; }

std::optional<mkfs_tool> mkfs_tool_for(std::string_view fs_name) {
    const tool_row* r = row_for(fs_name);
    if (r == nullptr) return std::nullopt;
    return mkfs_tool{r->program, r->package};
}

std::size_t max_label_bytes(std::string_view fs_name) {
    const tool_row* r = row_for(fs_name);
    return r == nullptr ? 0 : r->max_label;
}

std::vector<std::string> mkfs_command(const planned_partition& part, const std::string& node) {
    const tool_row* r = row_for(part.fs);
    if (r == nullptr) return {};
    std::vector<std::string> argv{std::string(r->program)};
    const std::string_view f = part.fs;
    if (f == "ext2" || f == "ext3" || f == "ext4")
        argv.insert(argv.end(), {"-F", "-q"});
    else if (f == "xfs" || f == "btrfs")
        argv.insert(argv.end(), {"-f", "-q"});
    else if (f == "jfs")
        argv.push_back("-q");
    else if (f == "reiserfs")
        argv.insert(argv.end(), {"-f", "-f", "-q"});
    if (!part.label.empty()) {
        argv.push_back(f == "vfat" ? "-n" : f == "reiserfs" ? "-l" : "-L");
        argv.push_back(part.label);
    }
    argv.push_back(node);
    return argv;
}

std::string find_program(std::string_view name, std::string_view path_env) {
    std::size_t pos = 0;
    while (pos <= path_env.size()) {
        const std::size_t colon = std::min(path_env.find(':', pos), path_env.size());
        std::string dir(path_env.substr(pos, colon - pos));
        pos = colon + 1;
        if (dir.empty()) dir = ".";
        const std::string candidate = dir + "/" + std::string(name);
        struct stat st {};
        if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
            ::access(candidate.c_str(), X_OK) == 0)
            return candidate;
    }
    return {};
}

std::vector<const planned_partition*> mount_order(const plan& p) {
    std::vector<const planned_partition*> out;
    for (const auto& part : p.partitions)
        if (!part.mount.empty()) out.push_back(&part);
    const auto depth = [](const std::string& m) {
        return m == "/" ? 0 : static_cast<int>(std::count(m.begin(), m.end(), '/'));
    };
    std::stable_sort(out.begin(), out.end(), [&](const auto* a, const auto* b) {
        const int da = depth(a->mount), db = depth(b->mount);
        return da != db ? da < db : a->mount < b->mount;
    });
    return out;
}

std::uint64_t kernel_size_bytes(const planned_partition& part, unsigned sector_bytes) {
    if (part.type == "extended")
        return std::min<std::uint64_t>(part.size_bytes,
                                       std::max<std::uint64_t>(1024, sector_bytes));
    return part.size_bytes;
}

result<disk_info> probe_disk(const std::string& path) {
    auto fd = open_fd(path, O_RDONLY);
    if (!fd) return std::move(fd).error();
    struct stat st {};
    if (::fstat(fd->get(), &st) != 0) return last_sys_error("stat " + path);
    if (!S_ISBLK(st.st_mode)) return fail(errc::not_a_disk, path + " (not a block device)");
    disk_info out;
    out.facts.path = path;
    std::uint64_t size = 0;
    if (::ioctl(fd->get(), BLKGETSIZE64, &size) != 0) return last_sys_error("BLKGETSIZE64 " + path);
    int sector = 0;
    if (::ioctl(fd->get(), BLKSSZGET, &sector) != 0) return last_sys_error("BLKSSZGET " + path);
    out.facts.size_bytes = size;
    out.facts.sector_bytes = static_cast<unsigned>(sector);
    std::error_code ec;
    const fs::path link = fs::read_symlink("/sys/dev/block/" + devno_text(st.st_rdev), ec);
    if (!ec) {
        const fs::path sys = fs::path("/sys/class/block") / link.filename();
        const std::string backing = trimmed(read_line(sys / "loop" / "backing_file"));
        const std::string model = trimmed(read_line(sys / "device" / "model"));
        if (!backing.empty())
            out.model = "loop device on " + backing;
        else
            out.model = model;
    }
    return out;
}

result<void> check_plan(const plan& p, const apply_options& options) {
    for (const auto& part : p.partitions) {
        const std::size_t max = max_label_bytes(part.fs);
        if (!part.label.empty() && max != 0 && part.label.size() > max)
            return fail(errc::label_too_long, at_line(options, part) + " (label=" + part.label +
                                                  " has " + std::to_string(part.label.size()) +
                                                  " bytes; " + part.fs + " takes at most " +
                                                  std::to_string(max) + ")");
    }
    return {};
}

result<void> check(const plan& p, const apply_options& options) {
    const std::string& path = p.disk.path;
    auto dev = whole_disk(path);
    if (!dev) return std::move(dev).error();

    if (auto roots = desc::root_disks()) {
        for (const auto& root : *roots) {
            struct stat st {};
            if (::stat(root.c_str(), &st) == 0 && S_ISBLK(st.st_mode) && st.st_rdev == dev->devno)
                return fail(errc::holds_root, path + " (/ is on " + root + ")");
        }
    }
    if (const std::string use = usage_of(path, *dev); !use.empty())
        return fail(errc::in_use, path + " (" + use + ")");
    if (auto ok = check_plan(p, options); !ok) return ok;
    // Mounting below a file fails only after the disk was erased: refused first.
    if (std::error_code ec; !mount_order(p).empty() && fs::exists(options.target, ec) && !fs::is_directory(options.target, ec))
        return error{std::make_error_code(std::errc::not_a_directory), "--target " + options.target};

    const std::string path_env = options.path_env.empty() ? default_path() : options.path_env;
    for (const auto& part : p.partitions) {
        if (part.fs.empty()) continue;
        const auto tool = mkfs_tool_for(part.fs);
        if (!tool) continue;  // the planner only passes known names
        if (find_program(tool->program, path_env).empty())
            return fail(errc::mkfs_missing, at_line(options, part) + " (fs=" + part.fs + " needs " +
                                                std::string(tool->program) +
                                                " from the Debian package " +
                                                std::string(tool->package) + ")");
    }
    for (const auto& part : p.partitions) {
        if (part.mount.empty() || part.fs.empty() || kernel_knows(part.fs)) continue;
        return fail(errc::kernel_fs_missing,
                    at_line(options, part) + " (fs=" + part.fs + " mount=" + part.mount + ")");
    }
    return {};
}

result<void> apply(const plan& p, const apply_options& options) {
    if (auto ok = check(p, options); !ok) return ok;
    const std::string& path = p.disk.path;
    auto dev = whole_disk(path);
    if (!dev) return std::move(dev).error();
    const std::string path_env = options.path_env.empty() ? default_path() : options.path_env;

    {
        // Held exclusively while the table changes: no mount can start meanwhile, and BLKRRPART
        // through this descriptor is not refused as "someone else holds the disk".
        auto fd = open_fd(path, O_RDWR | O_EXCL);
        if (!fd) {
            if (fd.error().code == std::errc::device_or_resource_busy)
                return fail(errc::in_use, path +
                                              " (it is open exclusively elsewhere: a mount in "
                                              "another mount namespace, md, LVM, ...)");
            return std::move(fd).error();
        }
        // Old partitions go first: their page caches and holders must not outlive the table.
        for (const auto& k : kernel_partitions(dev->name))
            if (auto ok = blkpg(fd->get(), BLKPG_DEL_PARTITION, k.number, 0, 0, path); !ok)
                return ok;

        // Old tables and signatures: the MBR and primary GPT, the backup GPT, and the start of
        // each partition, so blkid finds nothing stale where no mkfs runs.
        const std::uint64_t size = p.disk.size_bytes;
        if (auto ok = zero(fd->get(), 0, std::min(size, mib), path); !ok) return ok;
        if (size > mib)
            if (auto ok = zero(fd->get(), size - mib, mib, path); !ok) return ok;
        for (const auto& part : p.partitions)
            if (auto ok = zero(fd->get(), part.start_bytes, std::min(part.size_bytes, mib), path);
                !ok)
                return ok;
        if (::fsync(fd->get()) != 0) return last_sys_error("fsync " + path);

        if (auto ok = write_table(p, fd->get()); !ok) return ok;
        say(options, "partition table written (" +
                         std::string(p.table == desc::table_kind::gpt ? "gpt" : "dos") + ", " +
                         std::to_string(p.partitions.size()) + " partitions)");
        if (auto ok = sync_kernel_partitions(p, fd->get(), dev->name, options); !ok) return ok;
        // What went through the disk's own page cache is on the disk now; drop it so later
        // reads through the disk see what mkfs writes through the partitions.
        ::fsync(fd->get());
        ::ioctl(fd->get(), BLKFLSBUF, 0);
    }
    if (auto ok = ensure_nodes(p, dev->name, options); !ok) return ok;

    for (const auto& part : p.partitions) {
        if (part.fs.empty()) continue;
        const std::string node = node_of(dev->name, part.number);
        auto argv = mkfs_command(part, node);
        const std::string program = find_program(argv.front(), path_env);
        if (program.empty())
            return fail(errc::mkfs_missing, at_line(options, part) + " (" + argv.front() + ")");
        say(options,
            argv.front() + " " + node + (part.mount.empty() ? "" : " (" + part.mount + ")"));
        auto out = run(program, argv);
        if (!out) return std::move(out).error();
    }

    const auto order = mount_order(p);
    std::vector<std::string> mounted;
    const auto undo = [&] {
        for (auto it = mounted.rbegin(); it != mounted.rend(); ++it) unmount(*it);
    };
    for (const planned_partition* part : order) {
        if (part->fs.empty()) {
            say(options, "not mounting " + part->mount + ": partition " +
                             std::to_string(part->number) +
                             " has no fs=, so it holds no filesystem");
            continue;
        }
        std::string dir = options.target;
        while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
        if (part->mount != "/") dir += part->mount;
        std::error_code ec;
        fs::create_directories(dir, ec);
        if (ec) {
            undo();
            return sys_error(ec.value(), "mkdir " + dir);
        }
        const std::string node = node_of(dev->name, part->number);
        say(options, "mount " + node + " on " + dir + " (" + part->mount + ")");
        if (auto ok = mount_one(node, dir, part->fs); !ok) {
            undo();
            return ok;
        }
        mounted.push_back(dir);
    }
    return {};
}

}  // namespace kaclone::layout
