// `kaclone fixup`: the post-clone fixups of a cloned root, by hand.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <kaclone/fixup.hpp>

#include "commands.hpp"
#include "fixup_steps.hpp"

namespace kaclone::cli {
namespace {

struct fixup_options {
    std::string target;
    std::string disk;
    std::string hostname;
    std::string hostnames;
    std::string bootloader = "grub";
    std::string initrd_args;
    std::vector<std::string> map;
    std::vector<std::string> skip;
    std::vector<std::string> only;
    bool dry_run = false;
};

int failed(const std::string& message) {
    std::fprintf(stderr, "kaclone fixup: %s\n", message.c_str());
    return exit_failed;
}

void say(const std::string& line) {
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
}

bool contains(const std::vector<std::string>& names, const std::string& name) {
    return std::find(names.begin(), names.end(), name) != names.end();
}


int run_fixup(const CLI::App& command, const fixup_options& opts) {
    const auto& names = fixup::step_names();
    for (const auto* list : {&opts.skip, &opts.only})
        for (const auto& name : *list)
            if (!contains(names, name))
                return usage_error(command, "unknown step '" + name +
                                                "' (use fstab, identity, network, initramfs, "
                                                "bootloader or hooks)");
    if (!opts.hostname.empty() && !fixup::valid_hostname(opts.hostname))
        return usage_error(command, "--hostname: '" + opts.hostname + "' is not a valid host name");

    fixup::facts facts;
    facts.target = std::filesystem::absolute(opts.target).lexically_normal().string();
    while (facts.target.size() > 1 && facts.target.back() == '/') facts.target.pop_back();
    // The steps empty the machine-id, delete host keys and leases: never of the running system.
    std::error_code ec;
    if (std::filesystem::equivalent(facts.target, "/", ec))
        return failed(facts.target + " is the running system's root; give the clone's root");
    facts.disk = opts.disk;
    facts.hostname = opts.hostname;
    facts.bootloader = opts.bootloader;
    facts.initrd_args = split_words(opts.initrd_args);

    if (!opts.disk.empty()) {
        auto probe = fixup::probe_disk(opts.disk, facts.target);
        if (!probe) return failed(probe.error().message());
        facts.filesystems = std::move(probe->filesystems);
        facts.table = probe->table;
        facts.active_partitions = probe->active_partitions;
        for (const auto& f : facts.filesystems)
            say("facts: " + f.node + " " + f.type + " UUID=" + f.uuid +
                (f.mount.empty() ? "" : " mounted at " + f.mount));
    }
    if (std::none_of(facts.filesystems.begin(), facts.filesystems.end(),
                     [](const auto& f) { return f.mount == "/"; }))
        facts.root_uuid = fixup::filesystem_uuid(facts.target);
    for (const auto& m : opts.map) {
        // OLD may hold '=' itself (UUID=...): NEW is after the last one.
        const std::size_t eq = m.rfind('=');
        if (eq == std::string::npos || eq == 0 || eq + 1 == m.size())
            return usage_error(command, "--map: '" + m + "' is not OLD=NEW");
        std::string now = m.substr(eq + 1);
        if (now.rfind("/dev/", 0) == 0) {
            const auto it = std::find_if(facts.filesystems.begin(), facts.filesystems.end(),
                                         [&](const auto& f) { return f.node == now; });
            if (it == facts.filesystems.end() || it->uuid.empty())
                return usage_error(command, "--map: " + now + " is no filesystem of --disk");
            now = it->uuid;
        }
        facts.old_to_new[m.substr(0, eq)] = now;
    }
    if (!opts.hostnames.empty()) {
        std::ifstream in(opts.hostnames);
        std::stringstream text;
        text << in.rdbuf();
        if (!in) return failed("cannot read " + opts.hostnames + ": " + std::strerror(errno));
        auto entry = name_from_hostnames(text.str(), opts.hostnames, facts);
        if (!entry) return failed(entry.error().message());
        say("facts: hostname " + entry->name + " (" + opts.hostnames + ":" +
            std::to_string(entry->line) + ", " + entry->address + ")");
    }

    fixup_run run;
    run.skip = opts.skip;
    run.only = opts.only;
    run.mode = opts.dry_run ? fixup::dry_run::yes : fixup::dry_run::no;
    run.say = say;
    run.complain = [](const std::string& line) {
        std::fflush(stdout);
        std::fprintf(stderr, "kaclone fixup: %s\n", line.c_str());
    };
    if (const auto failures = run_fixup_steps(facts, run); !failures.empty()) return failed(failed_steps_text(failures));
    if (opts.dry_run) say("dry run: nothing changed in " + facts.target);
    return exit_ok;
}

}  // namespace

subcommand add_fixup(CLI::App& app) {
    auto opts = std::make_shared<fixup_options>();
    auto* cmd = app.add_subcommand("fixup", "Make a cloned root bootable and unique: fstab, identity, network, initramfs, bootloader");
    cmd->footer(
        "Steps, in order: fstab, identity, network, initramfs, bootloader, hooks. Each is named,\n"
        "prints what it changes (FILE: old -> new), is skipped with a reason when it does not\n"
        "apply, and a second run changes nothing. A failing step does not stop the others; the\n"
        "command then exits 1. The whole-machine clone (`join --disk`) runs them itself.\n\n"
        "Examples:\n  kaclone fixup /mnt/clone --disk /dev/sdb --hostname node07\n"
        "  kaclone fixup /mnt/clone --disk /dev/sdb --hostnames hosts.txt --skip bootloader --dry-run");
    cmd->add_option("TARGET", opts->target, "Root directory of the clone")->required()->check(CLI::ExistingDirectory);
    cmd->add_option("--disk", opts->disk, "Disk the clone lives on (for fstab and the bootloader)");
    auto* hostname = cmd->add_option("--hostname", opts->hostname, "Host name of the clone");
    cmd->add_option("--hostnames", opts->hostnames, "File of `MAC-or-IP name` lines; this node's line names it")
        ->check(CLI::ExistingFile)
        ->excludes(hostname);
    cmd->add_option("--bootloader", opts->bootloader, "grub, or none to leave the boot loader alone")
        ->check(CLI::IsMember({"grub", "none"}))
        ->capture_default_str();
    cmd->add_option("--initrd-args", opts->initrd_args, "Extra arguments for update-initramfs, dracut or mkinitrd");
    cmd->add_option("--map", opts->map,
                    "OLD=NEW: the fstab source OLD (UUID=..., /dev/sda2, LABEL=...) becomes the "
                    "filesystem NEW (a UUID, or a partition of --disk); repeatable");
    cmd->add_option("--skip", opts->skip, "Skip this step (repeatable)");
    cmd->add_option("--only", opts->only, "Run only this step (repeatable)");
    cmd->add_flag("--dry-run", opts->dry_run, "Print what would change, change nothing");
    return {cmd, [cmd, opts] { return run_fixup(*cmd, *opts); }};
}

}  // namespace kaclone::cli
