// `kaclone layout`: apply a partition description to a disk.
#include <memory>
#include <string>

#include "commands.hpp"

namespace kaclone::cli {
namespace {

struct layout_options {
    std::string disk;
    std::string desc;
    bool yes = false;
    bool dry_run = false;
};

int run_layout(const CLI::App& command, const layout_options&) { return not_built_yet(command); }

}  // namespace

subcommand add_layout(CLI::App& app) {
    auto opts = std::make_shared<layout_options>();
    auto* cmd = app.add_subcommand("layout", "Partition and format a disk from a description file");
    cmd->footer(
        "Destroys what is on DISK: refused without --yes, and refused for a disk that is mounted\n"
        "or holds the running system. --dry-run prints the plan and touches nothing.\n\n"
        "Example:\n  kaclone layout /dev/sdb sda.desc --dry-run");
    cmd->add_option("DISK", opts->disk, "Block device to lay out")->required();
    cmd->add_option("DESC", opts->desc, "Description file")->required()->check(CLI::ExistingFile);
    cmd->add_flag("--yes", opts->yes, "Confirm that DISK may be overwritten");
    cmd->add_flag("--dry-run", opts->dry_run, "Print the plan only");
    return {cmd, [cmd, opts] { return run_layout(*cmd, *opts); }};
}

}  // namespace kaclone::cli
