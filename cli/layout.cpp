// `kaclone layout`: apply a partition description to a disk.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>

#include <unistd.h>

#include <kaclone/desc.hpp>
#include <kaclone/layout.hpp>
#include <kaclone/layout_apply.hpp>
#include <kaclone/units.hpp>

#include "commands.hpp"

namespace kaclone::cli {
namespace {

struct layout_options {
    std::string disk;
    std::string desc;
    std::string target = "/mnt/disk";
    bool yes = false;
    bool dry_run = false;
};

int failed(const std::string& message) {
    std::fprintf(stderr, "kaclone layout: %s\n", message.c_str());
    return exit_failed;
}

void step(const std::string& line) {
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
}

// Asks on the terminal; true only for the answer "yes".
bool confirmed(const layout::disk_info& disk) {
    std::string what = format_bytes(disk.facts.size_bytes);
    if (!disk.model.empty()) what += ", " + disk.model;
    std::fprintf(stderr, "Type yes to erase %s (%s): ", disk.facts.path.c_str(), what.c_str());
    std::fflush(stderr);
    std::string answer;
    if (!std::getline(std::cin, answer)) return false;
    return answer == "yes";
}

int run_layout(const CLI::App&, const layout_options& opts) {
    std::ifstream in(opts.desc);
    std::stringstream text;
    text << in.rdbuf();
    if (!in) return failed("cannot read " + opts.desc + ": " + std::strerror(errno));
    auto file = desc::parse(text.str(), opts.desc);
    if (!file) return failed(file.error().message());

    auto disk = layout::probe_disk(opts.disk);
    if (!disk) return failed(disk.error().message());
    auto plan = layout::make_plan(*file, disk->facts, opts.desc);
    if (!plan) return failed(plan.error().message());
    std::fputs(layout::format_plan(*plan).c_str(), stdout);
    std::fflush(stdout);

    layout::apply_options options;
    options.desc_name = opts.desc;
    options.target = std::filesystem::absolute(opts.target).lexically_normal().string();
    if (const char* path = std::getenv("PATH")) options.path_env = path;
    options.log = step;
    if (auto ok = layout::check(*plan, options); !ok) return failed(ok.error().message());
    if (opts.dry_run) {
        step("dry run: nothing written to " + opts.disk);
        return exit_ok;
    }
    if (!opts.yes) {
        if (::isatty(STDIN_FILENO) == 0)
            return failed("refusing to erase " + opts.disk + " without --yes (no terminal to ask on)");
        if (!confirmed(*disk)) return failed("not confirmed; " + opts.disk + " left as it was");
    }
    if (auto ok = layout::apply(*plan, options); !ok) return failed(ok.error().message());
    step("done: " + opts.disk + " laid out" +
         (layout::mount_order(*plan).empty() ? "" : ", mounted below " + options.target));
    return exit_ok;
}

}  // namespace

subcommand add_layout(CLI::App& app) {
    auto opts = std::make_shared<layout_options>();
    auto* cmd = app.add_subcommand("layout", "Partition and format a disk from a description file");
    cmd->footer(
        "Prints the plan, then writes the partition table, makes every filesystem and mounts\n"
        "them below --target. Destroys what is on DISK: asks first on a terminal and refuses\n"
        "without one unless --yes; refuses a disk that is mounted, swap, or holds the running\n"
        "system, one too small, and filesystems whose mkfs is not installed. --dry-run prints\n"
        "the plan, runs those checks, and writes nothing.\n\n"
        "Example:\n  kaclone layout --desc sda.desc /dev/sdb --dry-run");
    cmd->add_option("--desc", opts->desc, "Description file")->required()->check(CLI::ExistingFile);
    cmd->add_option("DISK", opts->disk, "Block device to lay out")->required();
    cmd->add_option("--target", opts->target, "Directory to mount the filesystems below")->capture_default_str();
    cmd->add_flag("--yes", opts->yes, "Confirm that DISK may be overwritten");
    cmd->add_flag("--dry-run", opts->dry_run, "Print the plan, check, write nothing");
    return {cmd, [cmd, opts] { return run_layout(*cmd, *opts); }};
}

}  // namespace kaclone::cli
