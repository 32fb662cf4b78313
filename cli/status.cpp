// `kaclone status`: the live table of a running session, from any shell.
#include <memory>
#include <string>

#include "commands.hpp"

namespace kaclone::cli {
namespace {

struct status_options {
    std::string session = "default";
    std::string server;
};

int run_status(const CLI::App& command, const status_options&) { return not_built_yet(command); }

}  // namespace

subcommand add_status(CLI::App& app) {
    auto opts = std::make_shared<status_options>();
    auto* cmd = app.add_subcommand("status", "Show every node of a running session: phase, bytes, throughput, parent, errors");
    cmd->footer("Example:\n  kaclone status --session lab3");
    cmd->add_option("--session", opts->session, "Session to show")->capture_default_str();
    cmd->add_option("--server", opts->server, "Server HOST[:PORT]; skips the broadcast discovery");
    return {cmd, [cmd, opts] { return run_status(*cmd, *opts); }};
}

}  // namespace kaclone::cli
