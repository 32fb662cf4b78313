// The pure layout planner: where each partition of a description goes on a disk of a given size.
#include <kaclone/layout.hpp>

#include <algorithm>
#include <array>
#include <limits>

#include <kaclone/error_category.hpp>
#include <kaclone/units.hpp>

namespace kaclone::layout {
namespace {

using desc::placement;
using desc::size_kind;

// Positions are computed wide: sizes may each be up to 2^64 - 1 bytes (a description is checked
// without knowing the disk), and their sum must be compared with the disk, not wrap around.
using wide = unsigned __int128;
constexpr wide mib = desc::mib_bytes;

wide align_up(wide v) { return (v + mib - 1) / mib * mib; }
wide align_down(wide v) { return v / mib * mib; }
wide round_up(wide v, wide unit) { return (v + unit - 1) / unit * unit; }

std::uint64_t narrow(wide v) {
    KACLONE_ASSERT(v <= std::numeric_limits<std::uint64_t>::max());
    return static_cast<std::uint64_t>(v);
}

// "4096 MiB" for whole MiB (what people compare with a description), else "1.50 GiB".
std::string size_text(wide bytes) {
    if (bytes % mib == 0 && bytes / mib <= std::numeric_limits<std::uint64_t>::max())
        return std::to_string(static_cast<std::uint64_t>(bytes / mib)) + " MiB";
    if (bytes > std::numeric_limits<std::uint64_t>::max()) return "more than 16 EiB";
    return format_bytes(static_cast<std::uint64_t>(bytes));
}

// The bytes a SIZE in bytes or percent takes on `disk` (`fill` depends on the position).
wide sized(const desc::size_spec& s, const disk_facts& disk) {
    if (s.kind == size_kind::percent) return align_down(wide{disk.size_bytes} * s.percent / 100);
    return round_up(s.bytes, disk.sector_bytes);
}

// Where the layout would end if every `fill` took its minimum of 1 MiB: the size the
// partitions need, for the message when they do not fit.
struct reach {
    wide end = 0;            // end of the last partition, aligned, plus the gpt tail
    wide logicals_need = 0;  // dos: from the start of the extended partition to its last logical
};

reach measure(const desc::desc_file& file, const disk_facts& disk) {
    wide cursor = mib;
    wide ext_start = 0;
    wide ext_cursor = 0;
    bool ext_fill = false;
    for (const auto& p : file.partitions) {
        const wide size = p.size.kind == size_kind::fill ? mib : sized(p.size, disk);
        if (p.place == placement::logical) {
            ext_cursor = align_up(ext_cursor) + mib + size;
            continue;
        }
        const wide start = align_up(cursor);
        cursor = start + size;
        if (p.is_extended()) {
            ext_start = ext_cursor = start;
            ext_fill = p.size.kind == size_kind::fill;
        }
    }
    reach r;
    r.logicals_need = align_up(ext_cursor) - ext_start;
    r.end = align_up(cursor);
    if (ext_fill) r.end = std::max(r.end, align_up(ext_cursor));
    if (file.table == desc::table_kind::gpt) r.end += mib;
    return r;
}

// Why a partition does not fit, decided where it is found; the detail is worded afterwards.
enum class overflow {
    past_end,   // beyond the disk (or, for a logical one, beyond the extended partition)
    dos_limit,  // beyond the 2^32 sectors an MBR addresses
    tiny_percent,  // a percentage of a small disk that rounds down to 0 MiB
};

// One description partition placed on the disk.
struct placed {
    const desc::partition_spec* spec;
    wide start, size;
};

class planner {
public:
    planner(const desc::desc_file& file, const disk_facts& disk, std::string_view file_name)
        : file_(file), disk_(disk), file_name_(file_name) {
        const bool gpt = file.table == desc::table_kind::gpt;
        disk_end_ = align_down(disk.size_bytes);
        usable_end_ = gpt ? (disk_end_ >= mib ? disk_end_ - mib : 0) : disk_end_;
        dos_limit_ = gpt ? ~wide{0} : (wide{1} << 32) * disk.sector_bytes;
        fill_end_ = std::min(usable_end_, dos_limit_);
    }

    result<std::vector<placed>> place_all() {
        std::vector<placed> out;
        wide cursor = mib;
        for (const auto& p : file_.partitions) {
            const bool logical = p.place == placement::logical;
            const wide start = logical ? align_up(ext_cursor_) + mib : align_up(cursor);
            const wide bound = logical ? ext_end_ : usable_end_;
            wide size = 0;
            if (p.size.kind == size_kind::fill) {
                const wide fill_bound = logical ? ext_end_ : fill_end_;
                size = start < fill_bound ? align_down(fill_bound - start) : 0;
                if (size < mib) return fail(p, overflow::past_end);
            } else {
                size = sized(p.size, disk_);
                if (size == 0) return fail(p, overflow::tiny_percent);
                if (start + size > bound) return fail(p, overflow::past_end);
            }
            if (start + size > dos_limit_) return fail(p, overflow::dos_limit);

            out.push_back({&p, start, size});
            if (logical) {
                ext_cursor_ = start + size;
            } else {
                cursor = start + size;
            }
            if (p.is_extended()) {
                ext_start_ = ext_cursor_ = start;
                ext_end_ = start + size;
                extended_ = &p;
            }
        }
        return out;
    }

private:
    error fail(const desc::partition_spec& p, overflow why) const {
        std::string where = std::string(file_name_) + ":" + std::to_string(p.line) + " (";
        const reach need = measure(file_, disk_);
        const bool in_fixed_extended = p.place == placement::logical && extended_ &&
                                       extended_->size.kind != size_kind::fill;
        if (why == overflow::tiny_percent) {
            where += std::to_string(p.size.percent) + "% of the disk " + disk_.path +
                     " is less than 1 MiB";
        } else if (why == overflow::past_end && in_fixed_extended) {
            where += "logical partitions need " + size_text(need.logicals_need) +
                     " but the extended partition on line " + std::to_string(extended_->line) +
                     " has " + size_text(ext_end_ - ext_start_);
        } else if (why == overflow::past_end && need.end > disk_end_) {
            where += "partitions need " + size_text(need.end) + " but the disk " + disk_.path +
                     " has " + size_text(disk_end_);
        } else {
            // Past the end only because `fill` stopped at the MBR limit, or crossing it.
            where += "a dos partition table reaches only the first " +
                     format_bytes(narrow(dos_limit_)) + " of the disk " + disk_.path +
                     "; use label: gpt";
        }
        where += ")";
        return error{desc::make_error_code(desc::errc::does_not_fit), std::move(where)};
    }

    const desc::desc_file& file_;
    const disk_facts& disk_;
    std::string_view file_name_;
    wide disk_end_ = 0;    // the disk size, rounded down to whole MiB
    wide usable_end_ = 0;  // where partitions must end: gpt keeps its last MiB free
    wide dos_limit_ = 0;   // dos: 2^32 sectors; gpt: no limit
    wide fill_end_ = 0;    // where a primary `fill` ends
    const desc::partition_spec* extended_ = nullptr;  // dos: once placed
    wide ext_start_ = 0, ext_end_ = 0;
    wide ext_cursor_ = 0;  // the end of the last logical partition (or the extended start)
};

bool sector_size_ok(unsigned s) { return s >= 512 && s <= mib && (s & (s - 1)) == 0; }

}  // namespace

result<plan> make_plan(const desc::desc_file& file, const disk_facts& disk,
                       std::string_view file_name) {
    if (auto ok = desc::validate(file, file_name); !ok) return std::move(ok).error();
    if (file.partitions.empty()) return error{desc::make_error_code(desc::errc::no_partitions), std::string(file_name)};
    if (!sector_size_ok(disk.sector_bytes))
        return error{make_error_code(errc::out_of_range),
                     "sector size of " + disk.path + " (" + std::to_string(disk.sector_bytes) +
                         " bytes)"};
    planner pl{file, disk, file_name};
    auto placed_parts = pl.place_all();
    if (!placed_parts) return std::move(placed_parts).error();

    plan out;
    out.table = file.table;
    out.disk = disk;
    int next_primary = 1;
    int next_logical = 5;
    for (const auto& pp : *placed_parts) {
        const desc::partition_spec& s = *pp.spec;
        planned_partition part;
        part.number = s.place == placement::logical ? next_logical++ : next_primary++;
        part.place = s.place;
        part.start_bytes = narrow(pp.start);
        part.size_bytes = narrow(pp.size);
        part.type = s.type;
        if (file.table == desc::table_kind::dos) part.mbr_type = desc::mbr_type(s.type);
        else part.gpt_type = desc::gpt_type_guid(s.type);
        part.fs = s.fs;
        part.mount = s.mount;
        part.label = s.label;
        part.flags = s.flags;
        part.line = s.line;
        out.partitions.push_back(std::move(part));
    }
    std::stable_sort(out.partitions.begin(), out.partitions.end(),
                     [](const auto& a, const auto& b) { return a.number < b.number; });
    return out;
}

std::string format_plan(const plan& p) {
    std::string out = p.disk.path + ": " + format_bytes(p.disk.size_bytes) + ", " +
                      std::to_string(p.disk.sector_bytes) + "-byte sectors, label: " +
                      (p.table == desc::table_kind::gpt ? "gpt" : "dos") + "\n";
    using row = std::array<std::string, 8>;
    std::vector<row> rows{{"NUMBER", "START", "SIZE", "TYPE", "FS", "MOUNT", "LABEL", "FLAGS"}};
    const auto or_dash = [](const std::string& s) { return s.empty() ? std::string("-") : s; };
    for (const auto& part : p.partitions) {
        std::string flags;
        for (const auto& f : part.flags) flags += (flags.empty() ? "" : ",") + f;
        rows.push_back({std::to_string(part.number), size_text(part.start_bytes),
                        size_text(part.size_bytes), part.type, or_dash(part.fs),
                        or_dash(part.mount), or_dash(part.label), or_dash(flags)});
    }
    std::array<std::size_t, 8> widths{};
    for (const auto& r : rows)
        for (std::size_t c = 0; c < r.size(); ++c) widths[c] = std::max(widths[c], r[c].size());
    for (const auto& r : rows) {
        std::string line;
        for (std::size_t c = 0; c < r.size(); ++c) {
            line += r[c];
            if (c + 1 < r.size()) line += std::string(widths[c] - r[c].size() + 2, ' ');
        }
        while (!line.empty() && line.back() == ' ') line.pop_back();
        out += line + "\n";
    }
    return out;
}

}  // namespace kaclone::layout
