// `kaclone serve`: the golden node's side of a session.
#include <memory>
#include <string>
#include <vector>

#include "commands.hpp"
#include "options.hpp"

namespace kaclone::cli {
namespace {

struct serve_options {
    std::string session = "default";
    unsigned nodes = 0;
    std::string source;
    std::string disk;
    std::string desc;
    std::vector<std::string> excludes;
    std::uint16_t port = 0;
    std::uint64_t buffer_bytes = 64ull << 20;
};

int run_serve(const CLI::App& command, const serve_options&) { return not_built_yet(command); }

}  // namespace

subcommand add_serve(CLI::App& app) {
    auto opts = std::make_shared<serve_options>();
    auto* cmd = app.add_subcommand("serve", "Stream this machine (or a file, device or tree) to the nodes of a session");
    cmd->footer(
        "Waits until --nodes nodes have joined, arranges them in a chain of TCP connections and\n"
        "streams down the chain; every node stores the stream and forwards it.\n\n"
        "Examples:\n"
        "  kaclone serve --nodes 40 --disk sda --exclude /tmp     clone this machine\n"
        "  kaclone serve --nodes 8 --source image.raw             broadcast a file or device");
    cmd->add_option("--session", opts->session, "Session name; nodes join by this name")->capture_default_str();
    cmd->add_option("--nodes", opts->nodes, "Number of nodes to wait for before starting")->check(CLI::PositiveNumber);
    cmd->add_option("--source", opts->source, "Send a file, block device, directory or - (stdin)");
    cmd->add_option("--disk", opts->disk, "Clone this disk's partition layout and filesystems (e.g. sda)");
    cmd->add_option("--desc", opts->desc, "Partition description file (default: derived from --disk)");
    cmd->add_option("--exclude", opts->excludes, "Do not send this directory's content (repeatable)");
    cmd->add_option("--port", opts->port, "Control port (default: chosen automatically)");
    add_bytes_option(*cmd, "--buffer", opts->buffer_bytes, "Memory bound of the relay buffer on every node");
    cmd->get_option("--source")->excludes(cmd->get_option("--disk"));
    return {cmd, [cmd, opts] { return run_serve(*cmd, *opts); }};
}

}  // namespace kaclone::cli
