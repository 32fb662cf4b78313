// The manifest's text form: encode and decode (see kaclone/manifest.hpp).
#include <kaclone/manifest.hpp>

#include <charconv>
#include <map>

#include <kaclone/error_category.hpp>

namespace kaclone::manifest {
namespace {

const char* describe(errc e) noexcept {
    switch (e) {
        case errc::bad_header: return "not a kaclone manifest (no `kaclone-manifest N` first line)";
        case errc::other_version: return "manifest of another major version";
        case errc::bad_line: return "malformed manifest line";
        case errc::bad_stream: return "invalid stream record";
        case errc::no_end: return "manifest ends before its `end` line";
    }
    return "unknown manifest error";
}

bool plain(unsigned char c) noexcept { return c > 0x20 && c < 0x7f && c != '%' && c != '='; }

std::string escape(std::string_view value) {
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    for (const unsigned char c : value) {
        if (plain(c)) {
            out += static_cast<char>(c);
        } else {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    return out;
}

bool unescape(std::string_view in, std::string& out) {
    out.clear();
    for (std::size_t i = 0; i < in.size(); ++i) {
        if (in[i] != '%') {
            out += in[i];
            continue;
        }
        unsigned v = 0;
        if (i + 2 >= in.size()) return false;  // two hex digits must follow
        const auto r = std::from_chars(in.data() + i + 1, in.data() + i + 3, v, 16);
        if (r.ec != std::errc{} || r.ptr != in.data() + i + 3) return false;
        out += static_cast<char>(v);
        i += 2;
    }
    return true;
}

std::vector<std::string_view> words(std::string_view line) {
    std::vector<std::string_view> out;
    std::size_t i = 0;
    while (i < line.size()) {
        while (i < line.size() && line[i] == ' ') ++i;
        const std::size_t start = i;
        while (i < line.size() && line[i] != ' ') ++i;
        if (i > start) out.push_back(line.substr(start, i - start));
    }
    return out;
}

const char* kind_name(stream_kind k) {
    switch (k) {
        case stream_kind::tree: return "tree";
        case stream_kind::raw: return "raw";
        case stream_kind::boot_code: return "boot-code";
    }
    return "?";
}

// `text` as records `NAME LINE`, one per line, each value escaped.
void add_lines(std::string& out, const char* name, std::string_view text) {
    std::size_t start = 0;
    while (start < text.size()) {
        std::size_t end = text.find('\n', start);
        if (end == std::string_view::npos) end = text.size();
        out += std::string(name) + " " + escape(text.substr(start, end - start)) + "\n";
        start = end + 1;
    }
}

bool parse_number(const std::string& value, std::uint64_t& out) {
    const auto r = std::from_chars(value.data(), value.data() + value.size(), out);
    return r.ec == std::errc{} && r.ptr == value.data() + value.size();
}

error bad(errc e, std::string_view where, int line) {
    return error{make_error_code(e), std::string(where) + ":" + std::to_string(line)};
}

}  // namespace

const std::error_category& category() noexcept {
    static const enum_category<errc> instance{"kaclone.manifest", describe};
    return instance;
}
std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), category()}; }

std::string encode(const manifest& m) {
    std::string out = "kaclone-manifest " + std::to_string(version) + "\n";
    out += "session " + escape(m.session) + "\n";
    add_lines(out, "desc", m.desc);
    for (const stream_entry& s : m.streams) {
        out += "stream " + std::to_string(s.id) + " " + kind_name(s.kind);
        auto add = [&out](const char* key, const std::string& value) {
            if (!value.empty()) out += std::string(" ") + key + "=" + escape(value);
        };
        add("partition", s.partition);
        add("mount", s.mount);
        add("fs", s.fs);
        add("label", s.label);
        add("uuid", s.uuid);
        if (s.bytes != 0) out += " bytes=" + std::to_string(s.bytes);
        if (s.estimate != 0) out += " estimate=" + std::to_string(s.estimate);
        for (const auto& e : s.excludes) add("exclude", e);
        out += "\n";
    }
    out += "fixup bootloader=" + escape(m.fixup.bootloader) + " initrd-args=" + escape(m.fixup.initrd_args) + "\n";
    add_lines(out, "hostnames", m.hostnames);
    out += "end\n";
    return out;
}

result<manifest> decode(std::string_view text, std::string_view where) {
    manifest m;
    int number = 0;
    bool header = false, ended = false;
    std::size_t pos = 0;
    while (pos < text.size() && !ended) {
        std::size_t eol = text.find('\n', pos);
        if (eol == std::string_view::npos) eol = text.size();
        const std::string_view line = text.substr(pos, eol - pos);
        pos = eol + 1;
        ++number;
        const auto w = words(line);
        if (!header) {
            if (w.size() != 2 || w[0] != "kaclone-manifest") return bad(errc::bad_header, where, number);
            unsigned v = 0;
            const auto r = std::from_chars(w[1].data(), w[1].data() + w[1].size(), v);
            if (r.ec != std::errc{} || r.ptr != w[1].data() + w[1].size()) return bad(errc::bad_header, where, number);
            if (v != version) return bad(errc::other_version, where, number);
            header = true;
            continue;
        }
        if (w.empty()) continue;
        std::string value;
        if (w[0] == "end" && w.size() == 1) {
            ended = true;
        } else if (w[0] == "session" && w.size() == 2) {
            if (!unescape(w[1], m.session)) return bad(errc::bad_line, where, number);
        } else if ((w[0] == "desc" || w[0] == "hostnames") && w.size() <= 2) {
            if (w.size() == 2 && !unescape(w[1], value)) return bad(errc::bad_line, where, number);
            (w[0] == "desc" ? m.desc : m.hostnames) += value + "\n";
        } else if (w[0] == "stream" && w.size() >= 3) {
            stream_entry s;
            const auto r = std::from_chars(w[1].data(), w[1].data() + w[1].size(), s.id);
            if (r.ec != std::errc{} || r.ptr != w[1].data() + w[1].size() || s.id != m.streams.size() + 1)
                return bad(errc::bad_stream, where, number);
            if (w[2] == "tree") s.kind = stream_kind::tree;
            else if (w[2] == "raw") s.kind = stream_kind::raw;
            else if (w[2] == "boot-code") s.kind = stream_kind::boot_code;
            else return bad(errc::bad_stream, where, number);
            for (std::size_t i = 3; i < w.size(); ++i) {
                const auto eq = w[i].find('=');
                if (eq == std::string_view::npos || !unescape(w[i].substr(eq + 1), value)) return bad(errc::bad_line, where, number);
                const std::string_view key = w[i].substr(0, eq);
                if (key == "partition") s.partition = value;
                else if (key == "mount") s.mount = value;
                else if (key == "fs") s.fs = value;
                else if (key == "label") s.label = value;
                else if (key == "uuid") s.uuid = value;
                else if (key == "exclude") s.excludes.push_back(value);
                else if (key == "bytes" || key == "estimate") {
                    if (!parse_number(value, key == "bytes" ? s.bytes : s.estimate)) return bad(errc::bad_stream, where, number);
                }  // other keys: a later minor version's, ignored
            }
            if (s.kind == stream_kind::tree && (s.mount.empty() || s.mount[0] != '/')) return bad(errc::bad_stream, where, number);
            if (s.kind == stream_kind::boot_code && s.bytes != 446) return bad(errc::bad_stream, where, number);
            m.streams.push_back(std::move(s));
        } else if (w[0] == "fixup") {
            for (std::size_t i = 1; i < w.size(); ++i) {
                const auto eq = w[i].find('=');
                if (eq == std::string_view::npos || !unescape(w[i].substr(eq + 1), value)) return bad(errc::bad_line, where, number);
                const std::string_view key = w[i].substr(0, eq);
                if (key == "bootloader") m.fixup.bootloader = value;
                else if (key == "initrd-args") m.fixup.initrd_args = value;
            }
        } else {
            return bad(errc::bad_line, where, number);
        }
    }
    if (!header) return bad(errc::bad_header, where, 1);
    if (!ended) return bad(errc::no_end, where, number);
    return m;
}

}  // namespace kaclone::manifest
