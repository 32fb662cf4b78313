// `kaclone desc`: print the description of a disk's partition table.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include <kaclone/desc.hpp>
#include <kaclone/desc_derive.hpp>

#include "commands.hpp"

namespace kaclone::cli {
namespace {

struct desc_options {
    std::string disk;
    bool fill_last = false;
    std::string target;
};

int run_desc(const CLI::App&, const desc_options& opts) {
    desc::derive_options options;
    options.disk = opts.disk;
    options.fill = opts.fill_last ? desc::fill_last::yes : desc::fill_last::no;
    // Mount points are absolute: so must be the directory they are read relative to.
    if (!opts.target.empty()) options.root = std::filesystem::absolute(opts.target).lexically_normal().string();
    auto derived = desc::derive(options);
    if (!derived) {
        std::fprintf(stderr, "kaclone desc: %s\n", derived.error().message().c_str());
        return exit_failed;
    }
    for (const auto& note : derived->notes) std::fprintf(stderr, "kaclone desc: note: %s\n", note.c_str());
    std::fputs(desc::print(derived->file).c_str(), stdout);
    return std::fflush(stdout) == 0 ? exit_ok : exit_failed;
}

}  // namespace

subcommand add_desc(CLI::App& app) {
    auto opts = std::make_shared<desc_options>();
    auto* cmd = app.add_subcommand("desc", "Print the partition description of a disk (what `serve` sends and `layout` applies)");
    cmd->footer(
        "The description has one partition per line, `[logical] TYPE SIZE [key=value]...`,\n"
        "the format of the Ka tools' fdisk_to_desc, extended with GPT, units and filesystems.\n"
        "Mount points come from the running system's mounts, else from /etc/fstab; with\n"
        "--target DIR from the mounts below DIR (as `layout --target DIR` made them), else\n"
        "from DIR/etc/fstab.\n\n"
        "Example:\n  kaclone desc /dev/sda > sda.desc");
    cmd->add_option("DISK", opts->disk, "Disk to describe (default: the disk that holds /)");
    cmd->add_flag("--fill-last", opts->fill_last, "Write `fill` as the size of the last partition of each table");
    cmd->add_option("--target", opts->target, "Root directory of the system on DISK: mount points are read relative to it");
    return {cmd, [cmd, opts] { return run_desc(*cmd, *opts); }};
}

}  // namespace kaclone::cli
