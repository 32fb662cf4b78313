// Planning each fixup step: read what the target has, decide with the pure text functions what
// would change, and return it as edits and commands. Writes nothing.
#include <kaclone/fixup.hpp>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <sys/stat.h>
#include <unistd.h>

#include <kaclone/error_category.hpp>

namespace kaclone::fixup {
namespace {

namespace fs = std::filesystem;

const char* describe(errc e) noexcept {
    switch (e) {
        case errc::bad_hostnames_line:
            return "a hostnames line must be `MAC-or-IP name`";
        case errc::bad_address:
            return "not a MAC address (aa:bb:cc:dd:ee:ff) or an IP address";
        case errc::bad_hostname:
            return "not a valid host name (letters, digits, '-' and '.')";
        case errc::duplicate_address:
            return "address given twice";
        case errc::no_hostname_match:
            return "no line names a MAC or IP address of this node";
        case errc::ambiguous_hostname:
            return "this node's addresses match lines with different names";
        case errc::unknown_step:
            return "unknown step (use fstab, identity, network, initramfs, bootloader or hooks)";
        case errc::symlink_refused:
            return "is a symlink; not followed out of the target";
        case errc::command_failed:
            return "command failed";
        case errc::mount_failed:
            return "cannot mount in the target";
        case errc::not_a_disk:
            return "not a block device";
    }
    return "unknown fixup error";
}

error fail(errc e, std::string where) { return error{make_error_code(e), std::move(where)}; }

// A path inside the target as the host sees it.
std::string host_path(const facts& f, std::string_view inside) {
    std::string out = f.target;
    while (out.size() > 1 && out.back() == '/') out.pop_back();
    if (out == "/") out.clear();
    return out + std::string(inside);
}

enum class kind { missing, file, symlink, directory, other };

kind kind_of(const std::string& path) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) return kind::missing;
    if (S_ISLNK(st.st_mode)) return kind::symlink;
    if (S_ISREG(st.st_mode)) return kind::file;
    if (S_ISDIR(st.st_mode)) return kind::directory;
    return kind::other;
}

// The content of a regular file of the target; nothing when it does not exist; an error when
// it is a symlink (it could point anywhere on the host) or cannot be read.
result<std::optional<std::string>> read_target_file(const facts& f, std::string_view inside) {
    const std::string path = host_path(f, inside);
    switch (kind_of(path)) {
        case kind::missing:
            return std::optional<std::string>{};
        case kind::symlink:
            return fail(errc::symlink_refused, path);
        default:
            break;
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) return last_sys_error("read " + path);
    std::stringstream text;
    text << in.rdbuf();
    return std::optional<std::string>{text.str()};
}

std::string trimmed(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
        s.pop_back();
    std::size_t i = 0;
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
    return s.substr(i);
}

// The first of `candidates` (paths inside the target) that is an executable file or a symlink
// (which may be absolute and so resolve only inside the chroot), or "".
std::string find_in_target(const facts& f, std::initializer_list<std::string_view> candidates) {
    for (const auto c : candidates) {
        const std::string path = host_path(f, c);
        const kind k = kind_of(path);
        if (k == kind::symlink) return std::string(c);
        if (k == kind::file && ::access(path.c_str(), X_OK) == 0) return std::string(c);
    }
    return {};
}

// The regular files and symlinks of a target directory whose names end in `suffix`, sorted.
std::vector<std::string> files_in(const facts& f, std::string_view dir, std::string_view suffix) {
    std::vector<std::string> out;
    const std::string path = host_path(f, dir);
    if (kind_of(path) != kind::directory) return out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(path, ec)) {
        const std::string name = e.path().filename().string();
        if (name.size() < suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
            continue;
        const kind k = kind_of(e.path().string());
        if (k == kind::file || k == kind::symlink) out.push_back(std::string(dir) + "/" + name);
    }
    std::sort(out.begin(), out.end());
    return out;
}

edit write_edit(std::string path, std::string content, std::vector<change> changes) {
    edit e;
    e.path = std::move(path);
    e.what = edit::kind::write;
    e.content = std::move(content);
    e.changes = std::move(changes);
    return e;
}

edit remove_edit(std::string path) {
    edit e;
    e.path = std::move(path);
    e.what = edit::kind::remove;
    return e;
}

std::string new_root_uuid(const facts& f) {
    for (const auto& fsys : f.filesystems)
        if (fsys.mount == "/") return fsys.uuid;
    return f.root_uuid;
}

// ---- the steps ----

result<step_plan> plan_fstab(const facts& f) {
    step_plan plan;
    auto fstab = read_target_file(f, "/etc/fstab");
    if (!fstab) return std::move(fstab).error();
    if (!*fstab) {
        plan.skipped = "no /etc/fstab in the target";
        return plan;
    }
    if (f.filesystems.empty() && f.old_to_new.empty()) {
        plan.skipped = "the new filesystems are not known (give --disk)";
        return plan;
    }
    const rewritten r = rewrite_fstab(**fstab, f.filesystems, f.old_to_new);
    if (!r.changes.empty()) plan.edits.push_back(write_edit("/etc/fstab", r.text, r.changes));

    constexpr std::string_view resume_path = "/etc/initramfs-tools/conf.d/resume";
    auto resume = read_target_file(f, resume_path);
    if (!resume) return std::move(resume).error();
    if (*resume) {
        const rewritten rr = rewrite_resume(**resume, f.filesystems, f.old_to_new);
        if (!rr.changes.empty())
            plan.edits.push_back(write_edit(std::string(resume_path), rr.text, rr.changes));
    }
    return plan;
}

constexpr std::string_view ssh_marker = "/var/lib/kaclone/ssh-host-keys";

result<void> plan_ssh(const facts& f, step_plan& plan) {
    if (kind_of(host_path(f, "/etc/ssh")) != kind::directory) {
        plan.notes.push_back("ssh host keys skipped: no /etc/ssh in the target (ssh is not installed)");
        return {};
    }
    const std::string keygen = find_in_target(f, {"/usr/bin/ssh-keygen", "/bin/ssh-keygen"});
    if (keygen.empty()) {
        plan.notes.push_back("ssh host keys skipped: no ssh-keygen in the target (ssh is not installed)");
        return {};
    }
    std::vector<std::string> keys;
    for (const auto& k : files_in(f, "/etc/ssh", "_key"))
        if (k.rfind("/etc/ssh/ssh_host_", 0) == 0) keys.push_back(k);
    for (const auto& k : files_in(f, "/etc/ssh", "_key.pub"))
        if (k.rfind("/etc/ssh/ssh_host_", 0) == 0) keys.push_back(k);
    std::sort(keys.begin(), keys.end());

    // Host keys made for this clone are marked with the clone's new root filesystem (or its
    // host name): keys copied from the golden node carry the golden node's mark, or none.
    const std::string root = new_root_uuid(f);
    const std::string mark = root.empty() ? "hostname " + f.hostname + "\n" : "root " + root + "\n";
    auto marker = read_target_file(f, ssh_marker);
    if (!marker) return std::move(marker).error();
    if (*marker && **marker == mark && !keys.empty()) return {};

    for (const auto& k : keys) plan.edits.push_back(remove_edit(k));
    command c;
    c.argv = {keygen, "-A"};
    c.label = "ssh-keygen -A";
    plan.commands.push_back(std::move(c));
    plan.after.push_back(write_edit(std::string(ssh_marker), mark,
                                    {{*marker ? trimmed(**marker) : std::string(), trimmed(mark)}}));
    return {};
}

result<step_plan> plan_identity(const facts& f) {
    step_plan plan;
    auto machine_id = read_target_file(f, "/etc/machine-id");
    if (!machine_id) return std::move(machine_id).error();
    // systemd's first-boot convention: an empty /etc/machine-id gets a fresh ID on the next
    // boot (and ConditionFirstBoot units run); a missing one is also regenerated, so it stays.
    if (*machine_id && !(*machine_id)->empty())
        plan.edits.push_back(
            write_edit("/etc/machine-id", "", {{trimmed(**machine_id), "(empty)"}}));

    // D-Bus reads /var/lib/dbus/machine-id; as a symlink to /etc/machine-id it follows the
    // new ID (what Debian's dbus package makes).
    constexpr std::string_view dbus = "/var/lib/dbus/machine-id";
    const std::string dbus_path = host_path(f, dbus);
    const kind dbus_kind = kind_of(dbus_path);
    std::error_code ec;
    const bool linked = dbus_kind == kind::symlink &&
                        fs::read_symlink(dbus_path, ec).string() == "/etc/machine-id";
    if (dbus_kind != kind::missing && !linked) {
        edit e;
        e.path = std::string(dbus);
        e.what = edit::kind::symlink;
        e.content = "/etc/machine-id";
        std::string old = "(not a file)";
        if (dbus_kind == kind::file) {
            auto text = read_target_file(f, dbus);
            if (!text) return std::move(text).error();
            old = trimmed(**text);
        } else if (dbus_kind == kind::symlink) {
            old = "symlink to " + fs::read_symlink(dbus_path, ec).string();
        }
        e.changes = {{old, "symlink to /etc/machine-id"}};
        plan.edits.push_back(std::move(e));
    }

    if (auto ok = plan_ssh(f, plan); !ok) return std::move(ok).error();

    if (f.hostname.empty()) {
        plan.notes.push_back("hostname skipped: no --hostname or --hostnames given");
        return plan;
    }
    auto hostname = read_target_file(f, "/etc/hostname");
    if (!hostname) return std::move(hostname).error();
    const std::string old = *hostname ? trimmed(**hostname) : std::string();
    if (!*hostname || **hostname != hostname_file(f.hostname))
        plan.edits.push_back(write_edit("/etc/hostname", hostname_file(f.hostname),
                                        {{old.empty() ? "(none)" : old, f.hostname}}));
    auto hosts = read_target_file(f, "/etc/hosts");
    if (!hosts) return std::move(hosts).error();
    const rewritten r = rewrite_hosts(*hosts ? **hosts : std::string(), old, f.hostname);
    if (!r.changes.empty()) plan.edits.push_back(write_edit("/etc/hosts", r.text, r.changes));
    return plan;
}

result<step_plan> plan_network(const facts& f) {
    step_plan plan;
    std::vector<std::string> files;
    const auto add = [&](std::vector<std::string> more) {
        files.insert(files.end(), more.begin(), more.end());
    };
    constexpr std::string_view rules = "/etc/udev/rules.d/70-persistent-net.rules";
    const kind rules_kind = kind_of(host_path(f, rules));
    if (rules_kind == kind::file || rules_kind == kind::symlink) files.push_back(std::string(rules));
    add(files_in(f, "/var/lib/dhcp", ".leases"));          // dhclient (Debian, Ubuntu)
    add(files_in(f, "/var/lib/dhclient", ""));             // dhclient (Fedora, RHEL)
    add(files_in(f, "/var/lib/dhcpcd", ""));               // dhcpcd
    add(files_in(f, "/var/lib/dhcpcd5", ""));              // dhcpcd5 (Raspberry Pi OS)
    add(files_in(f, "/var/lib/NetworkManager", ".lease"));  // NetworkManager's internal client
    add(files_in(f, "/var/lib/systemd/network", ""));      // systemd-networkd
    for (auto& file : files) plan.edits.push_back(remove_edit(std::move(file)));
    return plan;
}

result<step_plan> plan_initramfs(const facts& f) {
    step_plan plan;
    command c;
    if (auto p = find_in_target(f, {"/usr/sbin/update-initramfs", "/sbin/update-initramfs"});
        !p.empty()) {
        c.argv = {p, "-u", "-k", "all"};
        c.label = "update-initramfs";
    } else if (p = find_in_target(f, {"/usr/bin/dracut", "/usr/sbin/dracut", "/sbin/dracut"});
               !p.empty()) {
        c.argv = {p, "--regenerate-all", "-f"};
        c.label = "dracut";
    } else if (p = find_in_target(f, {"/usr/sbin/mkinitrd", "/sbin/mkinitrd", "/usr/bin/mkinitrd"});
               !p.empty()) {
        c.argv = {p};
        c.label = "mkinitrd";
    } else {
        plan.skipped = "no update-initramfs, dracut or mkinitrd in the target";
        return plan;
    }
    c.argv.insert(c.argv.end(), f.initrd_args.begin(), f.initrd_args.end());
    plan.commands.push_back(std::move(c));
    return plan;
}

result<step_plan> plan_bootloader(const facts& f) {
    step_plan plan;
    if (f.bootloader == "none") {
        plan.skipped = "--bootloader none";
        return plan;
    }
    if (f.disk.empty()) {
        plan.skipped = "no --disk given";
        return plan;
    }
    const std::string install =
        find_in_target(f, {"/usr/sbin/grub-install", "/sbin/grub-install", "/usr/sbin/grub2-install"});
    if (install.empty()) {
        plan.skipped = "no grub-install in the target";
        return plan;
    }
    // EFI when the clone has an ESP mounted and grub's EFI modules; else BIOS (on dos, or on
    // gpt with a bios_grub partition).
    std::string esp;
    for (const auto& fsys : f.filesystems)
        if (fsys.type == "vfat" && (fsys.mount == "/boot/efi" || fsys.mount == "/efi")) esp = fsys.mount;
    // A dos table's MBR boot code (and some BIOSes) boot the active partition: the one with
    // /boot, else /, has the flag, alone.
    if (f.table == "dos") {
        const new_filesystem* boot = nullptr;
        for (const auto& fsys : f.filesystems)
            if (fsys.number > 0 && fsys.mount == "/boot") boot = &fsys;
        if (boot == nullptr)
            for (const auto& fsys : f.filesystems)
                if (fsys.number > 0 && fsys.mount == "/") boot = &fsys;
        if (boot != nullptr && f.active_partitions != std::vector<int>{boot->number})
            plan.boot_flag = boot_flag_change{f.disk, boot->number, f.active_partitions};
    }
    command grub;
    grub.label = "grub-install";
    if (!esp.empty() && kind_of(host_path(f, "/usr/lib/grub/x86_64-efi")) == kind::directory)
        grub.argv = {install, "--target=x86_64-efi", "--efi-directory=" + esp, "--no-nvram"};
    else
        grub.argv = {install, "--target=i386-pc", f.disk};
    plan.commands.push_back(std::move(grub));

    command config;
    if (auto p = find_in_target(f, {"/usr/sbin/update-grub", "/sbin/update-grub"}); !p.empty()) {
        config.argv = {p};
        config.label = "update-grub";
    } else if (p = find_in_target(f, {"/usr/sbin/grub-mkconfig", "/sbin/grub-mkconfig"}); !p.empty()) {
        config.argv = {p, "-o", "/boot/grub/grub.cfg"};
        config.label = "grub-mkconfig";
    } else if (p = find_in_target(f, {"/usr/sbin/grub2-mkconfig", "/sbin/grub2-mkconfig"}); !p.empty()) {
        config.argv = {p, "-o", "/boot/grub2/grub.cfg"};
        config.label = "grub2-mkconfig";
    } else {
        plan.notes.push_back("grub configuration skipped: no update-grub or grub-mkconfig in the target");
        return plan;
    }
    plan.commands.push_back(std::move(config));
    return plan;
}

constexpr std::string_view hooks_dir = "/etc/kaclone/fixup.d";

result<step_plan> plan_hooks(const facts& f) {
    step_plan plan;
    if (kind_of(host_path(f, hooks_dir)) != kind::directory) {
        plan.skipped = "no " + std::string(hooks_dir) + " in the target";
        return plan;
    }
    for (const auto& hook : files_in(f, hooks_dir, "")) {
        const std::string path = host_path(f, hook);
        if (kind_of(path) != kind::file || ::access(path.c_str(), X_OK) != 0) continue;
        command c;
        c.argv = {hook};
        c.label = hook.substr(hooks_dir.size() + 1);
        c.log_output = true;
        c.env = {"TARGET=" + f.target, "DISK=" + f.disk, "HOSTNAME=" + f.hostname,
                 "NODE_INDEX=" + (f.node_index ? std::to_string(*f.node_index) : std::string())};
        plan.commands.push_back(std::move(c));
    }
    if (plan.commands.empty()) plan.skipped = "no executable in " + std::string(hooks_dir);
    return plan;
}

}  // namespace

const std::error_category& category() noexcept {
    static const enum_category<errc> instance{"kaclone.fixup", describe};
    return instance;
}

std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), category()}; }

const std::vector<std::string>& step_names() {
    static const std::vector<std::string> names{"fstab",      "identity",   "network",
                                                "initramfs",  "bootloader", "hooks"};
    return names;
}

result<step_plan> plan_step(std::string_view name, const facts& f) {
    result<step_plan> plan = fail(errc::unknown_step, std::string(name));
    if (name == "fstab")
        plan = plan_fstab(f);
    else if (name == "identity")
        plan = plan_identity(f);
    else if (name == "network")
        plan = plan_network(f);
    else if (name == "initramfs")
        plan = plan_initramfs(f);
    else if (name == "bootloader")
        plan = plan_bootloader(f);
    else if (name == "hooks")
        plan = plan_hooks(f);
    if (plan) plan->step = std::string(name);
    return plan;
}

}  // namespace kaclone::fixup
