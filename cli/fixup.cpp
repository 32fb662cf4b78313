// `kaclone fixup`: the post-clone fixups of a cloned root, by hand.
#include <memory>
#include <string>
#include <vector>

#include "commands.hpp"

namespace kaclone::cli {
namespace {

struct fixup_options {
    std::string target;
    std::string disk;
    std::string hostname;
    std::vector<std::string> skip;
    std::vector<std::string> only;
    bool dry_run = false;
};

int run_fixup(const CLI::App& command, const fixup_options&) { return not_built_yet(command); }

}  // namespace

subcommand add_fixup(CLI::App& app) {
    auto opts = std::make_shared<fixup_options>();
    auto* cmd = app.add_subcommand("fixup", "Make a cloned root bootable and unique: fstab, identity, network, initramfs, bootloader");
    cmd->footer(
        "Each step is named, prints what it changes and can be skipped; a second run changes\n"
        "nothing. `join --disk` runs these steps itself after extraction.\n\n"
        "Example:\n  kaclone fixup /mnt/clone --disk /dev/sdb --hostname node07");
    cmd->add_option("TARGET", opts->target, "Root directory of the clone")->required()->check(CLI::ExistingDirectory);
    cmd->add_option("--disk", opts->disk, "Disk the clone lives on (for fstab and the bootloader)");
    cmd->add_option("--hostname", opts->hostname, "Host name of the clone");
    cmd->add_option("--skip", opts->skip, "Skip this step (repeatable)");
    cmd->add_option("--only", opts->only, "Run only this step (repeatable)");
    cmd->add_flag("--dry-run", opts->dry_run, "Print what would change, change nothing");
    return {cmd, [cmd, opts] { return run_fixup(*cmd, *opts); }};
}

}  // namespace kaclone::cli
