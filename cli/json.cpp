// JSON lines for `--json`.
#include "json.hpp"

#include <chrono>
#include <cstdio>

namespace kaclone::cli {

std::string json_escape(std::string_view text) {
    std::string out;
    out.reserve(text.size() + 2);
    for (const char c : text) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\t': out += "\\t"; break;
            case '\r': out += "\\r"; break;
            default:
                if (static_cast<unsigned char>(c) < 0x20) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
                    out += buf;
                } else {
                    out += c;
                }
        }
    }
    return out;
}

void json_object::key(std::string_view k) {
    if (text_.size() > 1) text_ += ',';
    text_ += '"';
    text_ += json_escape(k);
    text_ += "\":";
}

json_object& json_object::add(std::string_view k, std::string_view value) {
    key(k);
    text_ += '"';
    text_ += json_escape(value);
    text_ += '"';
    return *this;
}

json_object& json_object::add(std::string_view k, std::uint64_t value) {
    key(k);
    text_ += std::to_string(value);
    return *this;
}

json_object& json_object::add(std::string_view k, double value) {
    key(k);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3f", value);
    text_ += buf;
    return *this;
}

json_object& json_object::add(std::string_view k, bool value) {
    key(k);
    text_ += value ? "true" : "false";
    return *this;
}

json_object& json_object::add_raw(std::string_view k, std::string_view json) {
    key(k);
    text_ += json;
    return *this;
}

json_object json_event(std::string_view session, std::string_view name) {
    const auto now = std::chrono::system_clock::now().time_since_epoch();
    const double t = static_cast<double>(std::chrono::duration_cast<std::chrono::milliseconds>(now).count()) / 1000.0;
    json_object o;
    o.add("t", t).add("event", name).add("session", session);
    return o;
}

namespace {
const char* event_name(session_event::kind k) {
    switch (k) {
        case session_event::kind::joined: return "joined";
        case session_event::kind::refused: return "refused";
        case session_event::kind::started: return "started";
        case session_event::kind::assigned: return "assigned";
        case session_event::kind::progress: return "progress";
        case session_event::kind::node_done: return "node_done";
        case session_event::kind::node_failed: return "node_failed";
        case session_event::kind::released: return "released";
        case session_event::kind::phase: return "phase";
        case session_event::kind::left: return "left";
    }
    return "unknown";
}
}  // namespace

json_object event_json(std::string_view session, const session_event& e) {
    json_object o = json_event(session, event_name(e.what));
    if (e.node != 0) o.add("node", std::uint64_t{e.node});
    if (!e.name.empty()) o.add("name", e.name);
    if (!e.address.empty()) o.add("address", e.address);
    if (!e.parent_address.empty()) o.add("parent", e.parent_address);
    switch (e.what) {
        case session_event::kind::joined:
        case session_event::kind::left:
        case session_event::kind::started: o.add("count", std::uint64_t{e.count}); break;
        case session_event::kind::assigned: o.add("children", std::uint64_t{e.count}); break;
        case session_event::kind::progress:
        case session_event::kind::node_done:
        case session_event::kind::node_failed: o.add("bytes", e.bytes); break;
        default: break;
    }
    if (e.what == session_event::kind::phase) {
        o.add("phase", e.message).add("detail", e.detail);
        return o;
    }
    if (!e.message.empty()) o.add(e.what == session_event::kind::node_done ? "digest" : "message", e.message);
    return o;
}

void print_json_line(const json_object& object) {
    const std::string line = object.str() + "\n";
    std::fwrite(line.data(), 1, line.size(), stdout);
    std::fflush(stdout);
}

}  // namespace kaclone::cli
