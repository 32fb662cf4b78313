// Applying fixup plans: atomic file writes below the target, commands in a chroot with the
// kernel filesystems mounted for the run, and the facts of this node and of the new disk
// (getifaddrs, sysfs, libblkid). Needs root for the chroot and the mounts.
#include <kaclone/fixup.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <blkid/blkid.h>
#include <libfdisk/libfdisk.h>

#include <kaclone/child_process.hpp>
#include <kaclone/desc_derive.hpp>
#include <kaclone/unique_fd.hpp>

namespace kaclone::fixup {
namespace {

namespace fs = std::filesystem;

error fail(errc e, std::string where) { return error{make_error_code(e), std::move(where)}; }

std::string host_path(const std::string& target, std::string_view inside) {
    std::string out = target;
    while (out.size() > 1 && out.back() == '/') out.pop_back();
    if (out == "/") out.clear();
    return out + std::string(inside);
}

void say(const apply_options& options, const std::string& line) {
    if (options.log) options.log(line);
}

std::string shown(const std::string& s) { return s.empty() ? "(none)" : s; }

void log_edit(const std::string& step, const edit& e, const apply_options& options) {
    if (e.what == edit::kind::remove && e.changes.empty()) {
        say(options, step + ": " + e.path + ": removed");
        return;
    }
    for (const auto& c : e.changes)
        say(options, step + ": " + e.path + ": " + shown(c.old_line) + " -> " + shown(c.new_line));
}

// Writes `content` to `path` through a temp file in the same directory renamed over it, so a
// crash leaves the old file or the new one; the old file's mode and owner are kept (a new file
// gets 0644 root:root, its directory made first).
result<void> write_atomically(const std::string& path, const std::string& content) {
    struct stat old {};
    const bool existed = ::lstat(path.c_str(), &old) == 0;
    if (existed && S_ISLNK(old.st_mode)) return fail(errc::symlink_refused, path);
    const fs::path dir = fs::path(path).parent_path();
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return sys_error(ec.value(), "mkdir " + dir.string());
    std::string tmp = (dir / ("." + fs::path(path).filename().string() + ".kaclone-XXXXXX")).string();
    const int raw = ::mkostemp(tmp.data(), O_CLOEXEC);
    if (raw < 0) return last_sys_error("create a temp file in " + dir.string());
    unique_fd fd{raw};
    const auto undo = [&](error e) -> result<void> {
        ::unlink(tmp.c_str());
        return e;
    };
    std::size_t done = 0;
    while (done < content.size()) {
        const ssize_t n = ::write(fd.get(), content.data() + done, content.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return undo(last_sys_error("write " + tmp));
        done += static_cast<std::size_t>(n);
    }
    const mode_t mode = existed ? (old.st_mode & 07777) : 0644;
    const uid_t uid = existed ? old.st_uid : 0;
    const gid_t gid = existed ? old.st_gid : 0;
    if (::fchown(fd.get(), uid, gid) != 0 && (existed || ::geteuid() == 0))
        return undo(last_sys_error("chown " + tmp));
    if (::fchmod(fd.get(), mode) != 0) return undo(last_sys_error("chmod " + tmp));
    if (::fsync(fd.get()) != 0) return undo(last_sys_error("fsync " + tmp));
    fd.reset();
    if (::rename(tmp.c_str(), path.c_str()) != 0) return undo(last_sys_error("rename to " + path));
    return {};
}

result<void> apply_edit(const edit& e, const std::string& target) {
    const std::string path = host_path(target, e.path);
    switch (e.what) {
        case edit::kind::write:
            return write_atomically(path, e.content);
        case edit::kind::remove:
            if (::unlink(path.c_str()) != 0 && errno != ENOENT)
                return last_sys_error("remove " + path);
            return {};
        case edit::kind::symlink: {
            const std::string tmp = path + ".kaclone-link";
            ::unlink(tmp.c_str());
            if (::symlink(e.content.c_str(), tmp.c_str()) != 0)
                return last_sys_error("symlink " + tmp);
            if (::rename(tmp.c_str(), path.c_str()) != 0) {
                const error err = last_sys_error("rename to " + path);
                ::unlink(tmp.c_str());
                return err;
            }
            return {};
        }
    }
    return {};
}

// The kernel filesystems mounted inside the target for the commands of one step, unmounted in
// reverse order when this owner goes (also after a failed command). /dev and /sys are
// recursive binds (devpts, efivars), so they go with a lazy detach of the whole tree.
class chroot_mounts {
public:
    static result<chroot_mounts> mount_all(const std::string& target) {
        chroot_mounts out;
        struct spec {
            std::string_view dir, source, type;
            unsigned long flags;
        };
        const std::array<spec, 4> specs{{
            {"/dev", "/dev", "", MS_BIND | MS_REC},
            {"/proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC},
            {"/sys", "/sys", "", MS_BIND | MS_REC},
            {"/run", "/run", "", MS_BIND},
        }};
        for (const auto& s : specs) {
            const std::string dir = host_path(target, s.dir);
            struct stat st {};
            if (::lstat(dir.c_str(), &st) != 0) {
                if (::mkdir(dir.c_str(), 0755) != 0)
                    return last_sys_error("mkdir " + dir);
            } else if (!S_ISDIR(st.st_mode)) {
                return fail(errc::mount_failed, dir + " (not a directory)");
            }
            const std::string source(s.source), type(s.type);
            if (::mount(source.c_str(), dir.c_str(), type.empty() ? nullptr : type.c_str(), s.flags,
                        nullptr) != 0)
                return fail(errc::mount_failed,
                            dir + " (" + source + ": " + std::strerror(errno) + ")");
            out.mounted_.push_back(dir);
            // Private: nothing mounted below it propagates back to the host's /dev or /sys.
            ::mount(nullptr, dir.c_str(), nullptr, MS_REC | MS_PRIVATE, nullptr);
        }
        return out;
    }

    chroot_mounts() noexcept = default;
    chroot_mounts(chroot_mounts&& other) noexcept : mounted_(std::move(other.mounted_)) {
        other.mounted_.clear();
    }
    chroot_mounts& operator=(chroot_mounts&&) = delete;
    chroot_mounts(const chroot_mounts&) = delete;
    chroot_mounts& operator=(const chroot_mounts&) = delete;
    ~chroot_mounts() { unmount_all(); }

    void unmount_all() noexcept {
        for (auto it = mounted_.rbegin(); it != mounted_.rend(); ++it)
            if (::umount2(it->c_str(), 0) != 0) ::umount2(it->c_str(), MNT_DETACH);
        mounted_.clear();
    }

private:
    std::vector<std::string> mounted_;
};

// Runs `c` chrooted into `target` with stdin from /dev/null and stdout + stderr captured;
// logs each output line when the command asks for it.
result<void> run_in_chroot(const std::string& step, const command& c, const std::string& target,
                           const apply_options& options) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return last_sys_error("pipe");
    unique_fd read_end{fds[0]}, write_end{fds[1]};
    std::vector<std::string> env{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                 "HOME=/root", "LC_ALL=C"};
    env.insert(env.end(), c.env.begin(), c.env.end());
    std::vector<char*> argv, envp;
    for (const auto& a : c.argv) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);

    const pid_t pid = ::fork();
    if (pid < 0) {
        if (null_fd >= 0) ::close(null_fd);
        return last_sys_error("fork");
    }
    if (pid == 0) {
        // The child: only async-signal-safe calls until exec.
        if (null_fd >= 0) ::dup2(null_fd, 0);
        ::dup2(write_end.get(), 1);
        ::dup2(write_end.get(), 2);
        if (::chroot(target.c_str()) != 0 || ::chdir("/") != 0) {
            static const char msg[] = "kaclone: chroot failed\n";
            (void)!::write(2, msg, sizeof msg - 1);
            ::_exit(126);
        }
        ::execve(argv[0], argv.data(), envp.data());
        static const char msg[] = "kaclone: exec failed in the chroot\n";
        (void)!::write(2, msg, sizeof msg - 1);
        ::_exit(127);
    }
    if (null_fd >= 0) ::close(null_fd);
    write_end.reset();
    std::string pending;  // output not yet logged: the start of a line
    const std::string output = read_all(read_end.get(), [&](std::string_view chunk) {
        if (!c.log_output) return;
        pending += chunk;
        for (std::size_t nl; (nl = pending.find('\n')) != std::string::npos; pending.erase(0, nl + 1))
            say(options, step + ": " + c.label + ": " + pending.substr(0, nl));
    });
    if (c.log_output && !pending.empty()) say(options, step + ": " + c.label + ": " + pending);
    const std::string how = exit_problem(reap_child(pid));
    if (how.empty()) return {};
    std::string cmd;
    for (const auto& a : c.argv) cmd += (cmd.empty() ? "" : " ") + a;
    const std::string tail = c.log_output ? "" : output_tail(output);  // logged lines were shown already
    return fail(errc::command_failed, cmd + " (" + how + (tail.empty() ? "" : "; " + tail) + ")");
}

struct fdisk_context_free {
    void operator()(fdisk_context* c) const noexcept { fdisk_unref_context(c); }
};
struct fdisk_partition_free {
    void operator()(fdisk_partition* p) const noexcept { fdisk_unref_partition(p); }
};

std::string partitions_text(const std::vector<int>& numbers) {
    if (numbers.empty()) return "(none)";
    std::string out;
    for (int n : numbers) out += (out.empty() ? "partition " : ", ") + std::to_string(n);
    return out;
}

// Sets the dos active flag on `change.partition` and clears it everywhere else (libfdisk).
// Only the MBR (and EBRs) change: no partition moves, so the kernel needs no reread.
result<void> write_boot_flag(const boot_flag_change& change) {
    std::unique_ptr<fdisk_context, fdisk_context_free> cxt{fdisk_new_context()};
    if (!cxt) return sys_error(ENOMEM, "libfdisk");
    if (const int rc = fdisk_assign_device(cxt.get(), change.disk.c_str(), 0); rc < 0)
        return sys_error(-rc, "open " + change.disk);
    if (!fdisk_is_label(cxt.get(), DOS))
        return fail(errc::not_a_disk, change.disk + " (no dos partition table)");
    const std::size_t slots = fdisk_get_npartitions(cxt.get());
    for (std::size_t i = 0; i < slots; ++i) {
        fdisk_partition* raw = nullptr;
        if (fdisk_get_partition(cxt.get(), i, &raw) != 0 || raw == nullptr) continue;
        std::unique_ptr<fdisk_partition, fdisk_partition_free> pa{raw};
        if (!fdisk_partition_is_used(pa.get())) continue;
        const bool want = static_cast<int>(i) + 1 == change.partition;
        if ((fdisk_partition_is_bootable(pa.get()) != 0) == want) continue;
        if (const int rc = fdisk_toggle_partition_flag(cxt.get(), i, DOS_FLAG_ACTIVE); rc < 0)
            return sys_error(-rc, "set the boot flag of partition " + std::to_string(i + 1) +
                                      " of " + change.disk);
    }
    if (const int rc = fdisk_write_disklabel(cxt.get()); rc < 0)
        return sys_error(-rc, "write the partition table of " + change.disk);
    if (const int rc = fdisk_deassign_device(cxt.get(), 0); rc < 0)
        return sys_error(-rc, "close " + change.disk);
    return {};
}

std::string joined(const std::vector<std::string>& argv) {
    std::string out;
    for (const auto& a : argv) out += (out.empty() ? "" : " ") + a;
    return out;
}

}  // namespace

result<void> apply(const step_plan& plan, const std::string& target, const apply_options& options) {
    const bool dry = options.mode == dry_run::yes;
    for (const auto& e : plan.edits) {
        log_edit(plan.step, e, options);
        if (!dry)
            if (auto ok = apply_edit(e, target); !ok) return ok;
    }
    if (plan.boot_flag) {
        const auto& b = *plan.boot_flag;
        say(options, plan.step + ": " + b.disk + ": boot flag: " + partitions_text(b.was_active) +
                         " -> " + partitions_text({b.partition}));
        if (!dry)
            if (auto ok = write_boot_flag(b); !ok) return ok;
    }
    if (!plan.commands.empty()) {
        if (dry) {
            for (const auto& c : plan.commands)
                say(options, plan.step + ": would run " + joined(c.argv));
        } else {
            auto mounts = chroot_mounts::mount_all(target);
            if (!mounts) return std::move(mounts).error();
            for (const auto& c : plan.commands) {
                say(options, plan.step + ": run " + joined(c.argv));
                if (auto ok = run_in_chroot(plan.step, c, target, options); !ok) return ok;
            }
            mounts->unmount_all();
        }
    }
    for (const auto& e : plan.after) {
        log_edit(plan.step, e, options);
        if (!dry)
            if (auto ok = apply_edit(e, target); !ok) return ok;
    }
    return {};
}

std::vector<std::string> local_addresses() {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/sys/class/net", ec)) {
        std::ifstream in(e.path() / "address");
        std::string mac;
        std::getline(in, mac);
        for (char& c : mac) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (mac.size() == 17 && mac != "00:00:00:00:00:00") out.push_back(mac);
    }
    ifaddrs* list = nullptr;
    if (::getifaddrs(&list) == 0) {
        for (const ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
            if (a->ifa_addr == nullptr || (a->ifa_flags & IFF_LOOPBACK) != 0) continue;
            std::array<char, INET6_ADDRSTRLEN> buf{};
            const int family = a->ifa_addr->sa_family;
            const void* addr = nullptr;
            if (family == AF_INET)
                addr = &reinterpret_cast<const sockaddr_in*>(a->ifa_addr)->sin_addr;
            else if (family == AF_INET6)
                addr = &reinterpret_cast<const sockaddr_in6*>(a->ifa_addr)->sin6_addr;
            else
                continue;
            if (::inet_ntop(family, addr, buf.data(), buf.size()) != nullptr)
                out.emplace_back(buf.data());
        }
        ::freeifaddrs(list);
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

namespace {

struct blkid_probe_free {
    void operator()(blkid_struct_probe* p) const noexcept { blkid_free_probe(p); }
};

std::string lookup(blkid_probe pr, const char* name) {
    const char* data = nullptr;
    std::size_t len = 0;
    if (blkid_probe_lookup_value(pr, name, &data, &len) != 0 || data == nullptr) return {};
    return std::string(data);
}

std::string read_line(const fs::path& p) {
    std::ifstream in(p);
    std::string line;
    std::getline(in, line);
    return line;
}

}  // namespace

std::string filesystem_uuid(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return {};
    std::error_code ec;
    const fs::path link = fs::read_symlink(
        "/sys/dev/block/" + std::to_string(::major(st.st_dev)) + ":" + std::to_string(::minor(st.st_dev)),
        ec);
    if (ec) return {};
    const std::string node = "/dev/" + link.filename().string();
    std::unique_ptr<blkid_struct_probe, blkid_probe_free> pr{blkid_new_probe_from_filename(node.c_str())};
    if (!pr) return {};
    blkid_probe_enable_superblocks(pr.get(), 1);
    blkid_probe_set_superblocks_flags(pr.get(), BLKID_SUBLKS_UUID);
    if (blkid_do_safeprobe(pr.get()) != 0) return {};
    return lookup(pr.get(), "UUID");
}

result<disk_probe> probe_disk(const std::string& disk, const std::string& target) {
    struct stat st {};
    if (::stat(disk.c_str(), &st) != 0) return last_sys_error("open " + disk);
    if (!S_ISBLK(st.st_mode)) return fail(errc::not_a_disk, disk);
    const std::string devno = std::to_string(::major(st.st_rdev)) + ":" + std::to_string(::minor(st.st_rdev));
    std::error_code ec;
    const fs::path link = fs::read_symlink("/sys/dev/block/" + devno, ec);
    if (ec) return fail(errc::not_a_disk, disk + " (no " + devno + " in /sys/dev/block)");
    const fs::path sys = fs::path("/sys/class/block") / link.filename();

    struct part {
        int number;
        std::string name;
    };
    std::vector<part> parts;
    for (const auto& e : fs::directory_iterator(sys, ec))
        if (fs::exists(e.path() / "partition"))
            parts.push_back({std::atoi(read_line(e.path() / "partition").c_str()),
                             e.path().filename().string()});
    std::sort(parts.begin(), parts.end(), [](const part& a, const part& b) { return a.number < b.number; });

    disk_probe out;
    {
        std::unique_ptr<fdisk_context, fdisk_context_free> cxt{fdisk_new_context()};
        if (!cxt) return sys_error(ENOMEM, "libfdisk");
        if (fdisk_assign_device(cxt.get(), disk.c_str(), 1) == 0 && fdisk_has_label(cxt.get())) {
            if (fdisk_is_label(cxt.get(), GPT)) out.table = "gpt";
            if (fdisk_is_label(cxt.get(), DOS)) {
                out.table = "dos";
                const std::size_t slots = fdisk_get_npartitions(cxt.get());
                for (std::size_t i = 0; i < slots; ++i) {
                    fdisk_partition* raw = nullptr;
                    if (fdisk_get_partition(cxt.get(), i, &raw) != 0 || raw == nullptr) continue;
                    std::unique_ptr<fdisk_partition, fdisk_partition_free> pa{raw};
                    if (fdisk_partition_is_used(pa.get()) && fdisk_partition_is_bootable(pa.get()))
                        out.active_partitions.push_back(static_cast<int>(i) + 1);
                }
            }
        }
    }

    std::vector<desc::mount_entry> running;
    if (auto m = desc::running_mounts()) running = std::move(*m);
    for (const auto& p : parts) {
        new_filesystem f;
        f.node = "/dev/" + p.name;
        f.number = p.number;
        std::unique_ptr<blkid_struct_probe, blkid_probe_free> pr{
            blkid_new_probe_from_filename(f.node.c_str())};
        if (!pr) continue;
        blkid_probe_enable_superblocks(pr.get(), 1);
        blkid_probe_set_superblocks_flags(pr.get(),
                                          BLKID_SUBLKS_TYPE | BLKID_SUBLKS_LABEL | BLKID_SUBLKS_UUID);
        blkid_probe_enable_partitions(pr.get(), 1);
        blkid_probe_set_partitions_flags(pr.get(), BLKID_PARTS_ENTRY_DETAILS);
        if (blkid_do_safeprobe(pr.get()) != 0) continue;
        f.type = lookup(pr.get(), "TYPE");
        f.uuid = lookup(pr.get(), "UUID");
        f.label = lookup(pr.get(), "LABEL");
        f.partuuid = lookup(pr.get(), "PART_ENTRY_UUID");
        if (f.type.empty()) continue;
        if (f.type != "swap") {
            desc::partition_identity id;
            id.node = f.node;
            unsigned maj = 0, min = 0;
            if (std::sscanf(read_line(sys / p.name / "dev").c_str(), "%u:%u", &maj, &min) == 2) {
                id.major = maj;
                id.minor = min;
            }
            id.uuid = f.uuid;
            id.label = f.label;
            id.partuuid = f.partuuid;
            f.mount = desc::find_mount_point(id, running, {}, target);
        }
        out.filesystems.push_back(std::move(f));
    }
    return out;
}

}  // namespace kaclone::fixup
