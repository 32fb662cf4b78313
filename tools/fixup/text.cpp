// The pure text functions of the fixups: fstab and resume rewriting, hosts and hostname, the
// hostnames file. No I/O: each takes text and returns text (or an error naming FILE:LINE).
#include <kaclone/fixup.hpp>

#include <algorithm>
#include <array>
#include <cctype>

#include <arpa/inet.h>

namespace kaclone::fixup {
namespace {

error fail(errc e, std::string where) { return error{make_error_code(e), std::move(where)}; }

// The text split into lines, each with its newline (the last one may have none).
std::vector<std::string_view> lines_of(std::string_view text) {
    std::vector<std::string_view> out;
    std::size_t pos = 0;
    while (pos < text.size()) {
        const std::size_t nl = text.find('\n', pos);
        const std::size_t end = nl == std::string_view::npos ? text.size() : nl + 1;
        out.push_back(text.substr(pos, end - pos));
        pos = end;
    }
    return out;
}

std::string_view without_newline(std::string_view line) {
    if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
    return line;
}

bool blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

// A whitespace-separated field of a line: where it starts and how long it is.
struct field {
    std::size_t pos = 0, len = 0;
};

std::vector<field> fields_of(std::string_view line) {
    std::vector<field> out;
    std::size_t i = 0;
    while (i < line.size()) {
        while (i < line.size() && blank(line[i])) ++i;
        if (i >= line.size()) break;
        const std::size_t start = i;
        while (i < line.size() && !blank(line[i])) ++i;
        out.push_back({start, i - start});
    }
    return out;
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

bool starts_with(std::string_view s, std::string_view prefix) {
    return s.substr(0, prefix.size()) == prefix;
}

// "UUID=\"AbC\"" -> "UUID=abc": the form sources are compared in (quotes gone, UUIDs and
// PARTUUIDs in lower case, as blkid prints them).
std::string normalized_source(std::string_view src) {
    const std::size_t eq = src.find('=');
    if (starts_with(src, "/") || eq == std::string_view::npos) return std::string(src);
    std::string tag(src.substr(0, eq));
    std::string_view value = src.substr(eq + 1);
    if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') &&
        value.back() == value.front())
        value = value.substr(1, value.size() - 2);
    const std::string upper_tag = [&] {
        std::string t = tag;
        for (char& c : t) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        return t;
    }();
    if (upper_tag == "UUID" || upper_tag == "PARTUUID") return upper_tag + "=" + lower(value);
    return upper_tag + "=" + std::string(value);
}

// The source names a block device: a node or by-* link below /dev, or a tag libblkid resolves.
bool names_a_device(std::string_view src) {
    const std::string n = normalized_source(src);
    return starts_with(n, "/dev/") || starts_with(n, "UUID=") || starts_with(n, "LABEL=") ||
           starts_with(n, "PARTUUID=") || starts_with(n, "PARTLABEL=");
}

// fstab escapes blanks in paths as \040 (and tabs \011, backslash \134).
std::string unescaped(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 3 < s.size() &&
            std::all_of(s.begin() + static_cast<long>(i) + 1, s.begin() + static_cast<long>(i) + 4,
                        [](char c) { return c >= '0' && c <= '7'; })) {
            out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
            i += 3;
            continue;
        }
        out += s[i];
    }
    return out;
}

std::string normalized_mount(std::string_view m) {
    std::string out = unescaped(m);
    while (out.size() > 1 && out.back() == '/') out.pop_back();
    return out;
}

bool has_option(std::string_view options, std::string_view name) {
    std::size_t pos = 0;
    while (pos <= options.size()) {
        const std::size_t comma = std::min(options.find(',', pos), options.size());
        if (options.substr(pos, comma - pos) == name) return true;
        pos = comma + 1;
    }
    return false;
}

// Types of entries that never name a cloned filesystem, whatever their source says.
bool never_cloned_type(std::string_view type) {
    static constexpr std::array<std::string_view, 14> types{
        "tmpfs", "nfs", "nfs4", "cifs", "smbfs", "proc", "sysfs", "devpts",
        "none", "bind", "devtmpfs", "ramfs", "fuse", "sshfs"};
    return std::find(types.begin(), types.end(), type) != types.end() ||
           starts_with(type, "fuse.");
}

// The new UUID for an entry's `source`, or "" when it names nothing cloned.
struct uuid_finder {
    const std::vector<new_filesystem>& filesystems;
    const std::map<std::string, std::string>& old_to_new;

    // Already the UUID= of a new filesystem: it stays that one (so a second run, and entries
    // mapped explicitly, do not move).
    std::string already_new(const std::string& n) const {
        if (!starts_with(n, "UUID=")) return {};
        for (const auto& f : filesystems)
            if (!f.uuid.empty() && "UUID=" + lower(f.uuid) == n) return f.uuid;
        return {};
    }

    std::string mapped(const std::string& n) const {
        for (const auto& [old, now] : old_to_new)
            if (normalized_source(old) == n) return now;
        return {};
    }
};

}  // namespace

rewritten rewrite_fstab(std::string_view fstab, const std::vector<new_filesystem>& filesystems,
                        const std::map<std::string, std::string>& old_to_new) {
    const uuid_finder finder{filesystems, old_to_new};
    std::vector<const new_filesystem*> swaps;
    for (const auto& f : filesystems)
        if (f.type == "swap" && !f.uuid.empty()) swaps.push_back(&f);
    std::size_t next_swap = 0;

    rewritten out;
    for (std::string_view raw : lines_of(fstab)) {
        const std::string_view line = without_newline(raw);
        const auto fields = fields_of(line);
        const auto keep = [&] { out.text += raw; };
        if (fields.size() < 3 || line[fields[0].pos] == '#') {
            keep();
            continue;
        }
        const std::string_view source = line.substr(fields[0].pos, fields[0].len);
        const std::string_view mount = line.substr(fields[1].pos, fields[1].len);
        const std::string_view type = line.substr(fields[2].pos, fields[2].len);
        const std::string_view options =
            fields.size() > 3 ? line.substr(fields[3].pos, fields[3].len) : std::string_view{};
        if (!names_a_device(source) || never_cloned_type(type) || has_option(options, "bind") ||
            has_option(options, "rbind")) {
            keep();
            continue;
        }
        const std::string n = normalized_source(source);
        const bool swap = type == "swap";
        std::string uuid = finder.already_new(n);
        if (uuid.empty()) uuid = finder.mapped(n);
        if (uuid.empty() && !swap) {
            const std::string m = normalized_mount(mount);
            for (const auto& f : filesystems)
                if (f.type != "swap" && !f.uuid.empty() && !f.mount.empty() &&
                    normalized_mount(f.mount) == m) {
                    uuid = f.uuid;
                    break;
                }
        }
        // Swap entries take the new swaps in order, also those already rewritten, so the n-th
        // swap entry keeps getting the n-th new swap.
        if (swap) {
            if (uuid.empty() && next_swap < swaps.size()) uuid = swaps[next_swap]->uuid;
            ++next_swap;
        }
        const std::string replacement = "UUID=" + uuid;
        if (uuid.empty() || source == replacement) {
            keep();
            continue;
        }
        std::string now(line.substr(0, fields[0].pos));
        now += replacement;
        now += line.substr(fields[0].pos + fields[0].len);
        out.changes.push_back({std::string(line), now});
        out.text += now;
        if (raw.size() != line.size()) out.text += '\n';
    }
    return out;
}

rewritten rewrite_resume(std::string_view resume, const std::vector<new_filesystem>& filesystems,
                         const std::map<std::string, std::string>& old_to_new) {
    const uuid_finder finder{filesystems, old_to_new};
    std::string first_swap;
    for (const auto& f : filesystems)
        if (f.type == "swap" && !f.uuid.empty()) {
            first_swap = f.uuid;
            break;
        }
    rewritten out;
    for (std::string_view raw : lines_of(resume)) {
        const std::string_view line = without_newline(raw);
        std::size_t start = 0;
        while (start < line.size() && blank(line[start])) ++start;
        if (!starts_with(line.substr(start), "RESUME=")) {
            out.text += raw;
            continue;
        }
        const std::size_t value_pos = start + 7;
        std::size_t value_end = line.size();
        while (value_end > value_pos && blank(line[value_end - 1])) --value_end;
        std::string_view value = line.substr(value_pos, value_end - value_pos);
        if (value.size() >= 2 && value.front() == '"' && value.back() == '"')
            value = value.substr(1, value.size() - 2);
        std::string uuid;
        if (names_a_device(value)) {
            const std::string n = normalized_source(value);
            uuid = finder.already_new(n);
            if (uuid.empty()) uuid = finder.mapped(n);
            if (uuid.empty()) uuid = first_swap;
        }
        const std::string now =
            std::string(line.substr(0, value_pos)) + "UUID=" + uuid +
            std::string(line.substr(value_end));
        if (uuid.empty() || now == line) {
            out.text += raw;
            continue;
        }
        out.changes.push_back({std::string(line), now});
        out.text += now;
        if (raw.size() != line.size()) out.text += '\n';
    }
    return out;
}

rewritten rewrite_hosts(std::string_view hosts, std::string_view old_hostname,
                        std::string_view hostname) {
    rewritten out;
    bool found = false;
    for (std::string_view raw : lines_of(hosts)) {
        const std::string_view line = without_newline(raw);
        const auto fields = fields_of(line);
        if (found || fields.empty() || line.substr(fields[0].pos, fields[0].len) != "127.0.1.1") {
            out.text += raw;
            continue;
        }
        found = true;
        const std::size_t comment = line.find('#');
        std::vector<field> names;
        for (std::size_t i = 1; i < fields.size(); ++i)
            if (comment == std::string_view::npos || fields[i].pos < comment)
                names.push_back(fields[i]);
        std::string now;
        bool matched = false;
        if (!old_hostname.empty()) {
            std::size_t copied = 0;
            for (const auto& f : names) {
                const std::string_view name = line.substr(f.pos, f.len);
                std::string replaced;
                if (name == old_hostname)
                    replaced = hostname;
                else if (starts_with(name, old_hostname) && name.size() > old_hostname.size() &&
                         name[old_hostname.size()] == '.')
                    replaced = std::string(hostname) + std::string(name.substr(old_hostname.size()));
                else
                    continue;
                matched = true;
                now += line.substr(copied, f.pos - copied);
                now += replaced;
                copied = f.pos + f.len;
            }
            now += line.substr(copied);
        }
        if (!matched) {
            if (names.empty()) {
                const std::size_t ip_end = fields[0].pos + fields[0].len;
                now = std::string(line.substr(0, ip_end)) + "\t" + std::string(hostname);
                if (comment != std::string_view::npos) now += " " + std::string(line.substr(comment));
            } else {
                now = std::string(line.substr(0, names.front().pos)) + std::string(hostname);
                const std::size_t after = names.back().pos + names.back().len;
                if (comment != std::string_view::npos)
                    now += std::string(line.substr(after, comment - after)) +
                           std::string(line.substr(comment));
                else
                    now += std::string(line.substr(after));
            }
        }
        if (now == line) {
            out.text += raw;
            continue;
        }
        out.changes.push_back({std::string(line), now});
        out.text += now;
        if (raw.size() != line.size()) out.text += '\n';
    }
    if (!found) {
        const std::string now = "127.0.1.1\t" + std::string(hostname);
        if (!out.text.empty() && out.text.back() != '\n') out.text += '\n';
        out.text += now + "\n";
        out.changes.push_back({"", now});
    }
    return out;
}

std::string hostname_file(std::string_view hostname) { return std::string(hostname) + "\n"; }

bool valid_hostname(std::string_view name) {
    if (name.empty() || name.size() > 253) return false;
    std::size_t pos = 0;
    while (pos <= name.size()) {
        const std::size_t dot = std::min(name.find('.', pos), name.size());
        const std::string_view label = name.substr(pos, dot - pos);
        if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-')
            return false;
        for (char c : label)
            if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
        pos = dot + 1;
    }
    return true;
}

namespace {

// "AA-bb-CC-dd-EE-ff" -> "aa:bb:cc:dd:ee:ff"; "" when not a MAC address.
std::string normalized_mac(std::string_view s) {
    if (s.size() != 17) return {};
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (i % 3 == 2) {
            if (s[i] != ':' && s[i] != '-') return {};
            out += ':';
        } else {
            if (!std::isxdigit(static_cast<unsigned char>(s[i]))) return {};
            out += static_cast<char>(std::tolower(static_cast<unsigned char>(s[i])));
        }
    }
    return out;
}

// An IP address as inet_ntop prints it; "" when not one.
std::string normalized_ip(std::string_view s) {
    const std::string text(s);
    std::array<unsigned char, 16> bytes{};
    std::array<char, INET6_ADDRSTRLEN> buf{};
    if (::inet_pton(AF_INET, text.c_str(), bytes.data()) == 1)
        return ::inet_ntop(AF_INET, bytes.data(), buf.data(), buf.size());
    if (::inet_pton(AF_INET6, text.c_str(), bytes.data()) == 1)
        return ::inet_ntop(AF_INET6, bytes.data(), buf.data(), buf.size());
    return {};
}

}  // namespace

result<std::vector<hostname_entry>> parse_hostnames(std::string_view text,
                                                    std::string_view file_name) {
    std::vector<hostname_entry> out;
    int number = 0;
    for (std::string_view raw : lines_of(text)) {
        ++number;
        std::string_view line = without_newline(raw);
        line = line.substr(0, std::min(line.find('#'), line.size()));
        const auto fields = fields_of(line);
        if (fields.empty()) continue;
        const std::string where = std::string(file_name) + ":" + std::to_string(number);
        if (fields.size() != 2)
            return fail(errc::bad_hostnames_line,
                        where + " (" + std::to_string(fields.size()) +
                            (fields.size() == 1 ? " column" : " columns") + ", want 2)");
        const std::string_view address = line.substr(fields[0].pos, fields[0].len);
        const std::string_view name = line.substr(fields[1].pos, fields[1].len);
        std::string normalized = normalized_mac(address);
        if (normalized.empty()) normalized = normalized_ip(address);
        if (normalized.empty())
            return fail(errc::bad_address, where + " (" + std::string(address) + ")");
        if (!valid_hostname(name))
            return fail(errc::bad_hostname, where + " (" + std::string(name) + ")");
        for (const auto& e : out)
            if (e.address == normalized)
                return fail(errc::duplicate_address, where + " (" + std::string(address) +
                                                         ", also on line " +
                                                         std::to_string(e.line) + ")");
        out.push_back({normalized, std::string(name), number});
    }
    return out;
}

result<hostname_entry> match_hostname(const std::vector<hostname_entry>& entries,
                                      const std::vector<std::string>& addresses,
                                      std::string_view file_name) {
    const hostname_entry* found = nullptr;
    for (const auto& e : entries) {
        bool ours = false;
        for (const auto& a : addresses) {
            std::string n = normalized_mac(a);
            if (n.empty()) n = normalized_ip(a);
            if (n == e.address) ours = true;
        }
        if (!ours) continue;
        if (found != nullptr && found->name != e.name)
            return fail(errc::ambiguous_hostname,
                        std::string(file_name) + ":" + std::to_string(found->line) + " and " +
                            std::string(file_name) + ":" + std::to_string(e.line));
        if (found == nullptr) found = &e;
    }
    if (found == nullptr) {
        std::string list;
        for (const auto& a : addresses) list += (list.empty() ? "" : ", ") + a;
        return fail(errc::no_hostname_match,
                    std::string(file_name) + " (this node: " + (list.empty() ? "no addresses" : list) +
                        ")");
    }
    return *found;
}

}  // namespace kaclone::fixup
