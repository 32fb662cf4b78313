// `kaclone version`: what this executable is, for bug reports.
#include <cstdio>

#include <sys/utsname.h>

#include "commands.hpp"

namespace kaclone::cli {

subcommand add_version(CLI::App& app) {
    auto* cmd = app.add_subcommand("version", "Print kaclone's version, the compiler and the running kernel");
    return {cmd, [] {
                utsname host{};
                ::uname(&host);
                std::printf("kaclone %s\nbuilt with g++ %s\nkernel %s %s\n", KACLONE_VERSION,
                            __VERSION__, host.release, host.machine);
                return exit_ok;
            }};
}

}  // namespace kaclone::cli
