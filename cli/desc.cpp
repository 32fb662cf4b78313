// `kaclone desc`: print the description of a disk's partition table.
#include <memory>
#include <string>

#include "commands.hpp"

namespace kaclone::cli {
namespace {

struct desc_options {
    std::string disk;
    bool fill_last = false;
};

int run_desc(const CLI::App& command, const desc_options&) { return not_built_yet(command); }

}  // namespace

subcommand add_desc(CLI::App& app) {
    auto opts = std::make_shared<desc_options>();
    auto* cmd = app.add_subcommand("desc", "Print the partition description of a disk (what `serve` sends and `layout` applies)");
    cmd->footer(
        "The description has one partition per line, `[logical] TYPE SIZE [key=value]...`,\n"
        "the format of the Ka tools' fdisk_to_desc, extended with GPT, units and filesystems.\n\n"
        "Example:\n  kaclone desc /dev/sda > sda.desc");
    cmd->add_option("DISK", opts->disk, "Disk to describe (default: the disk that holds /)");
    cmd->add_flag("--fill-last", opts->fill_last, "Write `fill` as the size of the last partition of each table");
    return {cmd, [cmd, opts] { return run_desc(*cmd, *opts); }};
}

}  // namespace kaclone::cli
