// CLI11 options for the value kinds kaclone uses everywhere: sizes and durations.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include <kaclone/auth.hpp>
#include <kaclone/result.hpp>

namespace kaclone::cli {

// An option taking a size ("64M", "1G", "4096"), parsed by kaclone::parse_bytes; a bad value
// is a usage error naming the option and the text.
CLI::Option* add_bytes_option(CLI::App& app, const std::string& name, std::uint64_t& bytes,
                              const std::string& description);

// An option taking a duration ("500ms", "60s", "2m"), parsed by kaclone::parse_duration.
CLI::Option* add_duration_option(CLI::App& app, const std::string& name,
                                 std::chrono::milliseconds& duration,
                                 const std::string& description);

// --server HOST[:PORT] (join, go, status): checked by kaclone::parse_server, a bad value is a
// usage error.
CLI::Option* add_server_option(CLI::App& app, std::string& server);

// A whole number from `min` to `max` (kaclone::parse_whole); anything else is a usage error
// "'TEXT' is not WHAT". `name` is the type shown in --help.
CLI::Validator whole_number(std::uint64_t min, std::uint64_t max, const std::string& what, const std::string& name);
// A count of at least 1 (--nodes, --retries, --min).
CLI::Validator at_least_one();

// --key FILE: the session's pre-shared secret (serve, join and go take the same file).
CLI::Option* add_key_option(CLI::App& app, std::string& path);
// The key in `path` (auth::load_key's checks), or none when `path` is empty.
result<std::optional<auth::session_key>> load_key_option(const std::string& path);

}  // namespace kaclone::cli
