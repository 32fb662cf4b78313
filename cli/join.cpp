// `kaclone join`: a node's side of a session.
#include <memory>
#include <string>

#include "commands.hpp"
#include "options.hpp"

namespace kaclone::cli {
namespace {

struct join_options {
    std::string session = "default";
    std::string server;
    std::string sink;
    std::string exec;
    std::string disk;
    bool yes = false;
    unsigned retries = 5;
    std::uint64_t buffer_bytes = 64ull << 20;
};

int run_join(const CLI::App& command, const join_options&) { return not_built_yet(command); }

}  // namespace

subcommand add_join(CLI::App& app) {
    auto opts = std::make_shared<join_options>();
    auto* cmd = app.add_subcommand("join", "Join a session as a node: receive, store and forward its stream");
    cmd->footer(
        "Finds the server of the session by UDP broadcast (or uses --server), receives the\n"
        "stream from its parent in the chain, stores it and forwards it to its child.\n\n"
        "Examples:\n"
        "  kaclone join --disk /dev/sda --yes                     become a clone of the golden node\n"
        "  kaclone join --sink image.raw --server 10.0.0.1        store a broadcast file");
    cmd->add_option("--session", opts->session, "Session name to join")->capture_default_str();
    cmd->add_option("--server", opts->server, "Server HOST[:PORT]; skips the broadcast discovery");
    cmd->add_option("--sink", opts->sink, "Store the stream in a file, block device, directory or - (stdout)");
    cmd->add_option("--exec", opts->exec, "Pipe the stream into this shell command's stdin");
    cmd->add_option("--disk", opts->disk, "Lay out this disk and install the golden node's system on it");
    cmd->add_flag("--yes", opts->yes, "Confirm that --disk may be overwritten");
    cmd->add_option("--retries", opts->retries, "Discovery attempts before giving up")->capture_default_str();
    add_bytes_option(*cmd, "--buffer", opts->buffer_bytes, "Memory bound of the relay buffer on this node");
    cmd->get_option("--sink")->excludes(cmd->get_option("--exec"));
    cmd->get_option("--disk")->excludes(cmd->get_option("--sink"))->excludes(cmd->get_option("--exec"));
    return {cmd, [cmd, opts] { return run_join(*cmd, *opts); }};
}

}  // namespace kaclone::cli
