// Size and duration options: the text goes through kaclone's own parsers so that the command
// line, the desc files and the manifests agree on what "64M" means.
#include "options.hpp"

#include <kaclone/session.hpp>
#include <kaclone/units.hpp>

namespace kaclone::cli {
namespace {

// Turns a parser's result into the value or a CLI11 conversion error (a usage error, exit 2).
template <class T>
T value_or_usage_error(result<T> parsed, const std::string& name) {
    if (!parsed) throw CLI::ConversionError(name + ": " + parsed.error().message());
    return *std::move(parsed);
}

}  // namespace

CLI::Option* add_bytes_option(CLI::App& app, const std::string& name, std::uint64_t& bytes,
                              const std::string& description) {
    auto* option = app.add_option_function<std::string>(
        name,
        [&bytes, name](const std::string& text) {
            bytes = value_or_usage_error(parse_bytes(text), name);
        },
        description);
    return option->type_name("SIZE")->default_str(format_bytes(bytes));
}

CLI::Option* add_duration_option(CLI::App& app, const std::string& name,
                                 std::chrono::milliseconds& duration,
                                 const std::string& description) {
    auto* option = app.add_option_function<std::string>(
        name,
        [&duration, name](const std::string& text) {
            duration = value_or_usage_error(parse_duration(text), name);
        },
        description);
    return option->type_name("DURATION")->default_str(std::to_string(duration.count()) + "ms");
}

CLI::Validator whole_number(std::uint64_t min, std::uint64_t max, const std::string& what, const std::string& name) {
    return CLI::Validator(
        [=](std::string& text) -> std::string {
            return parse_whole(text, min, max) ? "" : "'" + text + "' is not " + what;
        },
        name);
}

CLI::Validator at_least_one() { return whole_number(1, 999999999, "a whole number from 1 to 999999999", "COUNT"); }

CLI::Option* add_server_option(CLI::App& app, std::string& server) {
    return app
        .add_option_function<std::string>(
            "--server",
            [&server](const std::string& text) {
                if (auto parsed = parse_server(text); !parsed) throw CLI::ValidationError(parsed.error().where);
                server = text;
            },
            "Server HOST (asked directly) or HOST:PORT (its control port); [IPV6]:PORT for IPv6")
        ->type_name("HOST[:PORT]");
}

result<std::optional<auth::session_key>> load_key_option(const std::string& path) {
    if (path.empty()) return std::optional<auth::session_key>{};
    auto key = auth::load_key(path);
    if (!key) return std::move(key).error();
    return std::optional<auth::session_key>{*key};
}

CLI::Option* add_key_option(CLI::App& app, std::string& path) {
    return app.add_option("--key", path,
                          "Pre-shared secret file (mode 600, >= 16 bytes, e.g. head -c 32 /dev/urandom): every connection "
                          "proves it and every frame is tagged; without it the session runs open")
        ->option_text("FILE");
}

}  // namespace kaclone::cli
