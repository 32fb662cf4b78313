// JSON lines for `--json`: one object per line, for scripts and dashboards.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <kaclone/session.hpp>

namespace kaclone::cli {

// Builds one JSON object, key by key, in the order added. Strings are escaped (control
// characters, quotes, backslashes; bytes >= 0x80 pass through, so UTF-8 stays UTF-8).
class json_object {
public:
    json_object& add(std::string_view key, std::string_view value);
    json_object& add(std::string_view key, const char* value) { return add(key, std::string_view(value)); }
    json_object& add(std::string_view key, std::uint64_t value);
    json_object& add(std::string_view key, double value);
    json_object& add(std::string_view key, bool value);
    // `json` must already be valid JSON (an array or object built elsewhere).
    json_object& add_raw(std::string_view key, std::string_view json);
    std::string str() const { return text_ + "}"; }

private:
    void key(std::string_view k);
    std::string text_ = "{";
};

std::string json_escape(std::string_view text);

// The event as one JSON object with "t" (Unix time, seconds with milliseconds), "event" and
// the fields the event uses (see README "JSON events").
json_object event_json(std::string_view session, const session_event& e);

// Starts an object with "t" and "event" = `name`.
json_object json_event(std::string_view session, std::string_view name);

// Prints `object` as one line on stdout and flushes, so a reader sees every event at once.
void print_json_line(const json_object& object);

}  // namespace kaclone::cli
