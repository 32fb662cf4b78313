// Parsing, checking and printing of disk descriptions (see the grammar in desc.hpp).
#include <kaclone/desc.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <limits>
#include <optional>
#include <set>
#include <span>

#include <kaclone/error_category.hpp>

namespace kaclone::desc {
namespace {

const char* describe(errc e) noexcept {
    switch (e) {
        case errc::unknown_type:
            return "unknown partition type (use linux, swap, extended or typeXX; with label: gpt "
                   "use linux, swap, esp, bios or a type GUID)";
        case errc::bad_size:
            return "bad partition size (use a whole number of MiB, a number with K, M, G or T, "
                   "a percentage of the disk, or fill)";
        case errc::fill_not_last:
            return "fill is allowed only on the last partition of its table (the primary "
                   "partitions, or the logical ones)";
        case errc::logical_without_extended:
            return "logical partition without an extended partition before it";
        case errc::two_extended: return "second extended partition (a dos table holds one)";
        case errc::too_many_primaries:
            return "too many partitions (dos holds 4 primary and extended partitions, gpt 128 "
                   "partitions)";
        case errc::extended_on_gpt:
            return "extended and logical partitions exist only with label: dos";
        case errc::bad_label:
            return "bad label line (write label: dos or label: gpt, before the first partition)";
        case errc::bad_column:
            return "bad column (each at most once: fs=ext2|ext3|ext4|xfs|btrfs|vfat|swap|jfs|"
                   "reiserfs, mount=/absolute/path, label=name, flags=boot,esp,bios_grub; fs=swap "
                   "only with swap, no mount for swap, nothing for extended)";
        case errc::duplicate_mount: return "mount point already used by an earlier partition";
        case errc::does_not_fit: return "partition does not fit on the disk";
        case errc::bad_line:
            return "not a partition line (expected [logical] TYPE SIZE [key=value]...)";
        case errc::no_partition_table: return "no dos or gpt partition table";
        case errc::root_not_on_disk: return "the running / is not on a block device";
        case errc::no_partitions:
            return "no partitions: laying it out would only erase the disk (expected lines "
                   "[logical] TYPE SIZE [key=value]...)";
    }
    return "unknown desc error";
}

constexpr unsigned dos_max_primaries = 4;
constexpr unsigned gpt_max_partitions = 128;

struct named_guid {
    std::string_view name;
    std::string_view guid;
};
constexpr std::array<named_guid, 4> gpt_names{{
    {"linux", "0FC63DAF-8483-4772-8E79-3D69D8477DE4"},
    {"swap", "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"},
    {"esp", "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"},
    {"bios", "21686148-6449-6E6F-744E-656564454649"},
}};

constexpr std::array<std::string_view, 9> filesystems{
    "ext2", "ext3", "ext4", "xfs", "btrfs", "vfat", "swap", "jfs", "reiserfs"};

// Blanks separate words; everything else (also bytes >= 0x80) belongs to a word.
bool is_blank(char c) noexcept {
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

int hex_digit(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// "0fc63daf-8483-4772-8e79-3d69d8477de4" -> upper case, or nothing when it is not 8-4-4-4-12 hex.
std::optional<std::string> canonical_guid(std::string_view s) {
    static constexpr std::array<std::size_t, 4> dashes{8, 13, 18, 23};
    if (s.size() != 36) return std::nullopt;
    std::string out(s);
    for (std::size_t i = 0; i < out.size(); ++i) {
        const bool dash = std::find(dashes.begin(), dashes.end(), i) != dashes.end();
        if (dash != (out[i] == '-')) return std::nullopt;
        if (dash) continue;
        if (hex_digit(out[i]) < 0) return std::nullopt;
        if (out[i] >= 'a') out[i] = static_cast<char>(out[i] - 'a' + 'A');
    }
    return out;
}

// The canonical spelling of TYPE on `table` (see partition_spec::type), or nothing.
std::optional<std::string> canonical_type(std::string_view token, table_kind table) {
    if (table == table_kind::dos) {
        if (token == "linux" || token == "swap" || token == "extended") return std::string(token);
        if (!token.starts_with("type") || token.size() < 5 || token.size() > 6) return std::nullopt;
        unsigned code = 0;
        for (const char c : token.substr(4)) {
            const int d = hex_digit(c);
            if (d < 0) return std::nullopt;
            code = code * 16 + static_cast<unsigned>(d);
        }
        switch (code) {
            case 0x00: return std::nullopt;  // an empty slot, not a partition
            case 0x83: return "linux";
            case 0x82: return "swap";
            case 0x05:
            case 0x0f:
            case 0x85: return "extended";  // the CHS, LBA and Linux kinds are all containers
            default: break;
        }
        static constexpr std::string_view digits = "0123456789abcdef";
        return std::string{"type"} + digits[code >> 4] + digits[code & 0xf];
    }
    for (const auto& n : gpt_names)
        if (token == n.name) return std::string(token);
    auto guid = canonical_guid(token);
    if (!guid || *guid == "00000000-0000-0000-0000-000000000000") return std::nullopt;
    for (const auto& n : gpt_names)
        if (*guid == n.guid) return std::string(n.name);
    return guid;
}

// SIZE: `fill`, `N%` (1..100), or N with an optional binary unit (none = MiB). Whole numbers
// only, so every size is exact; more than 2^64 - 1 bytes is an error, not a wrap.
std::optional<size_spec> parse_size(std::string_view token) {
    if (token == "fill") return size_spec::fill();
    std::size_t n = 0;
    while (n < token.size() && token[n] >= '0' && token[n] <= '9') ++n;
    if (n == 0) return std::nullopt;
    std::uint64_t value = 0;
    const auto [end, ec] = std::from_chars(token.data(), token.data() + n, value);
    if (ec != std::errc{} || end != token.data() + n) return std::nullopt;  // too many digits
    const std::string_view unit = token.substr(n);
    if (unit == "%") {
        if (value < 1 || value > 100) return std::nullopt;
        return size_spec::of_percent(static_cast<unsigned>(value));
    }
    struct unit_shift {
        std::string_view short_name, long_name;
        unsigned shift;
    };
    static constexpr std::array<unit_shift, 4> units{
        {{"K", "KiB", 10}, {"M", "MiB", 20}, {"G", "GiB", 30}, {"T", "TiB", 40}}};
    unsigned shift = 20;  // a bare number is MiB
    if (!unit.empty()) {
        const auto u = std::find_if(units.begin(), units.end(), [&](const unit_shift& s) {
            return unit == s.short_name || unit == s.long_name;
        });
        if (u == units.end()) return std::nullopt;
        shift = u->shift;
    }
    if (value == 0 || value > (std::numeric_limits<std::uint64_t>::max() >> shift))
        return std::nullopt;
    return size_spec::of_bytes(value << shift);
}

// A value holds no blank, no '#' (both would change how the line reads back) and no control
// character; it is not empty.
bool is_plain_value(std::string_view v) noexcept {
    return !v.empty() && std::none_of(v.begin(), v.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return is_blank(c) || c == '#' || u < 0x20 || u == 0x7f;
    });
}

// "/srv//data/" -> "/srv/data": the spelling two mount points are compared in.
std::string tidy_mount(std::string_view path) {
    std::string out;
    for (const char c : path)
        if (c != '/' || out.empty() || out.back() != '/') out += c;
    if (out.size() > 1 && out.back() == '/') out.pop_back();
    return out;
}

bool is_canonical_mount(std::string_view m) {
    if (!is_plain_value(m) || m.front() != '/' || tidy_mount(m) != m) return false;
    std::size_t pos = 1;
    while (pos < m.size()) {
        const std::size_t next = std::min(m.find('/', pos), m.size());
        const std::string_view part = m.substr(pos, next - pos);
        if (part == "." || part == "..") return false;
        pos = next + 1;
    }
    return true;
}

// The column that breaks the rules, as the error's detail ("fs=ntfs"), or "" when all are fine.
std::string column_problem(const partition_spec& p, table_kind table) {
    const auto fs = std::find(filesystems.begin(), filesystems.end(), p.fs);
    if (!p.fs.empty() && fs == filesystems.end()) return "fs=" + p.fs;
    if (!p.mount.empty() && !is_canonical_mount(p.mount)) return "mount=" + p.mount;
    if (!p.label.empty() && !is_plain_value(p.label)) return "label=" + p.label;
    for (std::size_t i = 0; i < p.flags.size(); ++i) {
        const std::string& f = p.flags[i];
        const bool gpt_flag = f == "esp" || f == "bios_grub";
        if (f != "boot" && !(gpt_flag && table == table_kind::gpt))
            return f.empty() ? "an empty flag in flags=" : gpt_flag ? "flag " + f + " with label: dos" : "flag " + f;
        const auto earlier = p.flags.begin() + static_cast<std::ptrdiff_t>(i);
        if (std::find(p.flags.begin(), earlier, f) != earlier) return "flag " + f + " twice";
    }
    if (p.is_extended() && !(p.fs.empty() && p.mount.empty() && p.label.empty() && p.flags.empty()))
        return "extended takes no fs=, mount=, label= or flags=";  // a container: nothing to format, mount or label
    if (p.type == "bios" && !(p.fs.empty() && p.mount.empty())) return "bios takes no fs= or mount=";  // raw boot code for GRUB
    if (p.type == "swap" && !p.mount.empty()) return "swap takes no mount=";
    if (p.type == "swap" && !p.fs.empty() && p.fs != "swap") return "fs=" + p.fs + " on swap";
    if (p.type != "swap" && p.fs == "swap") return "fs=swap on " + p.type;
    return "";
}

bool size_ok(const size_spec& s) noexcept {
    switch (s.kind) {
        case size_kind::bytes: return s.bytes > 0 && s.bytes % 1024 == 0 && s.percent == 0;
        case size_kind::percent: return s.percent >= 1 && s.percent <= 100 && s.bytes == 0;
        case size_kind::fill: return s.bytes == 0 && s.percent == 0;
    }
    return false;
}

error at(errc e, std::string_view file_name, int line, std::string_view detail = {}) {
    std::string where = std::string(file_name) + ":" + std::to_string(line);
    if (!detail.empty()) where += " (" + std::string(detail) + ")";
    return error{make_error_code(e), std::move(where)};
}

// The rules of a whole file, fed one partition at a time in file order, so that parse() stops
// at the first bad line and validate() finds the same error.
class checker {
public:
    checker(table_kind table, std::string_view file_name) : table_(table), file_name_(file_name) {}

    result<void> add(const partition_spec& p) {
        const bool logical = p.place == placement::logical;
        if (table_ == table_kind::gpt && (logical || p.is_extended()))
            return fail(errc::extended_on_gpt, p.line);
        const auto canonical = canonical_type(p.type, table_);
        if (!canonical || *canonical != p.type) return fail(errc::unknown_type, p.line);
        if (!size_ok(p.size)) return fail(errc::bad_size, p.line);
        if (const std::string bad = column_problem(p, table_); !bad.empty()) return fail(errc::bad_column, p.line, bad);

        if (table_ == table_kind::gpt) {
            if (++count_ > gpt_max_partitions) return fail(errc::too_many_primaries, p.line);
        } else if (logical) {
            if (!have_extended_) return fail(errc::logical_without_extended, p.line);
            if (p.is_extended()) return fail(errc::two_extended, p.line);
        } else {
            if (p.is_extended() && have_extended_) return fail(errc::two_extended, p.line);
            if (++count_ > dos_max_primaries) return fail(errc::too_many_primaries, p.line);
        }
        // The error names the `fill` line: that is the partition to change.
        std::optional<int>& fill_line = fill_lines_[logical ? 1 : 0];
        if (fill_line) return fail(errc::fill_not_last, *fill_line);
        if (p.size.kind == size_kind::fill) fill_line = p.line;
        if (!p.mount.empty() && !mounts_.insert(p.mount).second)
            return fail(errc::duplicate_mount, p.line);
        if (p.is_extended()) have_extended_ = true;
        return {};
    }

private:
    error fail(errc e, int line, std::string_view detail = {}) const { return at(e, file_name_, line, detail); }

    table_kind table_;
    std::string_view file_name_;
    unsigned count_ = 0;  // gpt: partitions; dos: primary + extended
    bool have_extended_ = false;
    std::array<std::optional<int>, 2> fill_lines_{};  // [0] primary table, [1] logicals
    std::set<std::string, std::less<>> mounts_;
};

std::vector<std::string_view> words(std::string_view line) {
    line = line.substr(0, line.find('#'));
    std::vector<std::string_view> out;
    std::size_t i = 0;
    while (i < line.size()) {
        while (i < line.size() && is_blank(line[i])) ++i;
        const std::size_t start = i;
        while (i < line.size() && !is_blank(line[i])) ++i;
        if (i > start) out.push_back(line.substr(start, i - start));
    }
    return out;
}

// `label: gpt` or `label:gpt`; the value, or nothing when the line is malformed.
std::optional<table_kind> parse_label(const std::vector<std::string_view>& w) {
    const bool two_words = w.size() == 2 && w[0] == "label:";
    const bool one_word = w.size() == 1 && w[0].size() > 6;
    if (!two_words && !one_word) return std::nullopt;
    const std::string_view value = two_words ? w[1] : w[0].substr(6);
    if (value == "dos") return table_kind::dos;
    if (value == "gpt") return table_kind::gpt;
    return std::nullopt;
}

// The key=value words after SIZE. Only the syntax is checked here; checker::add() checks values.
result<void> parse_columns(std::span<const std::string_view> w, partition_spec& p,
                           std::string_view file_name) {
    std::set<std::string_view> seen;
    for (const std::string_view word : w) {
        const std::size_t eq = word.find('=');
        if (eq == std::string_view::npos) return at(errc::bad_line, file_name, p.line);
        const std::string_view key = word.substr(0, eq);
        const std::string_view value = word.substr(eq + 1);
        if (value.empty()) return at(errc::bad_column, file_name, p.line, std::string(word) + " without a value");
        if (!seen.insert(key).second) return at(errc::bad_column, file_name, p.line, std::string(key) + "= twice");
        if (key == "fs") {
            p.fs = value;
        } else if (key == "mount") {
            // A relative path stays as written, for the checker to reject.
            p.mount = value.front() == '/' ? tidy_mount(value) : std::string(value);
        } else if (key == "label") {
            p.label = value;
        } else if (key == "flags") {
            std::size_t pos = 0;
            while (true) {
                const std::size_t comma = value.find(',', pos);
                p.flags.emplace_back(value.substr(pos, comma - pos));
                if (comma == std::string_view::npos) break;
                pos = comma + 1;
            }
        } else {
            return at(errc::bad_column, file_name, p.line, key.empty() ? std::string(word) : "unknown key " + std::string(key) + "=");
        }
    }
    return {};
}

}  // namespace

const std::error_category& category() noexcept {
    static const enum_category<errc> instance{"kaclone.desc", describe};
    return instance;
}

std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), category()}; }

result<desc_file> parse(std::string_view text, std::string_view file_name) {
    desc_file out;
    std::optional<checker> rules;  // made at the first partition, when the table is known
    bool seen_content = false;     // a label or partition line: a `label:` line must come first
    int line_no = 0;
    std::size_t pos = 0;
    while (pos <= text.size()) {
        const std::size_t nl = std::min(text.find('\n', pos), text.size());
        const std::string_view line = text.substr(pos, nl - pos);
        pos = nl + 1;
        ++line_no;
        const auto w = words(line);
        if (w.empty()) continue;

        if (w[0] == "label" || w[0].starts_with("label:")) {
            const auto table = parse_label(w);
            if (seen_content || !table) return at(errc::bad_label, file_name, line_no);
            out.table = *table;
            out.label_line = true;
            seen_content = true;
            continue;
        }
        seen_content = true;

        partition_spec p;
        p.line = line_no;
        std::size_t i = 0;
        if (w[0] == "logical") {
            p.place = placement::logical;
            i = 1;
        }
        if (i >= w.size()) return at(errc::bad_line, file_name, line_no);
        if (out.table == table_kind::gpt && (p.place == placement::logical || w[i] == "extended"))
            return at(errc::extended_on_gpt, file_name, line_no);
        auto type = canonical_type(w[i++], out.table);
        if (!type) return at(errc::unknown_type, file_name, line_no);
        p.type = std::move(*type);
        if (i >= w.size()) return at(errc::bad_size, file_name, line_no);
        const auto size = parse_size(w[i++]);
        if (!size) return at(errc::bad_size, file_name, line_no);
        p.size = *size;
        if (auto columns = parse_columns(std::span(w).subspan(i), p, file_name); !columns)
            return std::move(columns).error();

        if (!rules) rules.emplace(out.table, file_name);
        if (auto ok = rules->add(p); !ok) return std::move(ok).error();
        out.partitions.push_back(std::move(p));
    }
    return out;
}

result<void> validate(const desc_file& file, std::string_view file_name) {
    checker rules{file.table, file_name};
    for (const auto& p : file.partitions)
        if (auto ok = rules.add(p); !ok) return ok;
    return {};
}

std::string print_size(const size_spec& size) {
    switch (size.kind) {
        case size_kind::fill: return "fill";
        case size_kind::percent: return std::to_string(size.percent) + "%";
        case size_kind::bytes: break;
    }
    if (size.bytes % mib_bytes == 0) return std::to_string(size.bytes / mib_bytes);
    return std::to_string(size.bytes / 1024) + "K";
}

std::string print(const desc_file& file) {
    std::string out;
    if (file.label_line || file.table != table_kind::dos)
        out += file.table == table_kind::gpt ? "label: gpt\n" : "label: dos\n";
    for (const auto& p : file.partitions) {
        if (p.place == placement::logical) out += "logical ";
        out += p.type;
        out += ' ';
        out += print_size(p.size);
        if (!p.fs.empty()) out += " fs=" + p.fs;
        if (!p.mount.empty()) out += " mount=" + p.mount;
        if (!p.label.empty()) out += " label=" + p.label;
        for (std::size_t i = 0; i < p.flags.size(); ++i) {
            out += i == 0 ? " flags=" : ",";
            out += p.flags[i];
        }
        out += '\n';
    }
    return out;
}

std::uint8_t mbr_type(std::string_view type) noexcept {
    if (type == "linux") return 0x83;
    if (type == "swap") return 0x82;
    if (type == "extended") return 0x05;
    if (type.size() != 6 || !type.starts_with("type")) return 0;
    const int hi = hex_digit(type[4]);
    const int lo = hex_digit(type[5]);
    if (hi < 0 || lo < 0) return 0;
    return static_cast<std::uint8_t>(hi * 16 + lo);
}

std::string gpt_type_guid(std::string_view type) {
    for (const auto& n : gpt_names)
        if (type == n.name) return std::string(n.guid);
    auto guid = canonical_guid(type);
    return guid ? *guid : std::string{};
}

}  // namespace kaclone::desc
