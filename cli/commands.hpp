// The subcommands of the `kaclone` executable: each file adds one to the top-level app.
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

namespace kaclone::cli {

// A registered subcommand: `app` is its CLI11 node; after a parse that selected it, run() does
// the work with the options the parse filled in and returns the exit code (0 ok, 1 failed).
struct subcommand {
    CLI::App* app;
    std::function<int()> run;
};

subcommand add_serve(CLI::App& app);
subcommand add_join(CLI::App& app);
subcommand add_go(CLI::App& app);
subcommand add_status(CLI::App& app);
subcommand add_desc(CLI::App& app);
subcommand add_layout(CLI::App& app);
subcommand add_fixup(CLI::App& app);
subcommand add_version(CLI::App& app);

// Exit codes of the executable.
inline constexpr int exit_ok = 0;
inline constexpr int exit_failed = 1;
inline constexpr int exit_usage = 2;

// A usage error found after parsing (a missing or conflicting option): the reason and the hint
// to --help on stderr, like CLI11's own errors; returns exit_usage.
int usage_error(const CLI::App& command, const std::string& reason);

}  // namespace kaclone::cli
