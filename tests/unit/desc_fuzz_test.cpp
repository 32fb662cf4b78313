// desc and layout on random and mutated descriptions: no crash, print/parse round trips, and
// every plan keeps its invariants. Seeded (KACLONE_FUZZ_SEED, else the clock) and bounded to
// about 2 s; the seed is printed and recorded so a failure can be replayed.
#include <kaclone/desc.hpp>
#include <kaclone/layout.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

namespace kaclone::desc {
namespace {

constexpr std::uint64_t mib = mib_bytes;
constexpr int max_inputs = 20'000;
constexpr auto time_budget = std::chrono::seconds{2};

const std::array<const char*, 12> corpus{
    "linux 3500\nextended fill\nlogical swap 500\nlogical linux fill\n",
    "# node01, the golden one\nlinux 3500   # root\n\nswap 500\nlinux fill\n",
    "label: dos\nlinux 512M fs=xfs mount=/\nswap 1G fs=swap\n",
    "linux 1G fs=ext4 mount=/boot label=boot flags=boot\nswap 2G fs=swap\nextended fill\n"
    "logical linux 30% fs=btrfs mount=/home\nlogical linux fill fs=ext3 mount=/srv/data\n",
    "label: gpt\nbios 1M\nesp 512M fs=vfat mount=/boot/efi flags=esp,boot\n"
    "a19d880f-05fc-4d3b-a006-743f0f84911e 100 label=data\nlinux fill fs=ext4 mount=/\n",
    "typefd 4096K\ntypeFD 1536K\ntype7 5%\ntype0b 1T\n",
    "linux 100\nextended 2000\nlogical swap 500\nlinux 300 fs=jfs label=x=y\n",
    "label: gpt\nlinux 10%\nswap 4G\nlinux 20G fs=reiserfs mount=/var\nlinux fill mount=/\n",
    "linux 25%\r\nlinux 25%\r\nlinux 25%\r\nlinux fill\r\n",
    "extended 1000\nlogical linux 100\nlogical linux 1536K\nlogical swap 10\n",
    "label:gpt\n0FC63DAF-8483-4772-8E79-3D69D8477DE4 1TiB fs=ext2\nswap 8GiB\n",
    "\n\n# only comments\n#linux 5\n",
};

const std::array<std::string_view, 52> tokens{
    "linux", "swap", "extended", "logical", "typefd", "type83", "type00", "typezz", "esp", "bios",
    "fill", "100", "0", "-5", "99999999999999999999", "17592186044415", "17592186044416", "10%",
    "%", "101%", "100%", "512M", "1.5G", "4096K", "2T", "7KiB", "label:", "label: gpt",
    "label: dos", "gpt", "fs=ext4", "fs=swap", "fs=", "mount=/", "mount=/boot", "mount=rel",
    "mount=/a/../b", "mount=//x//", "label=root", "flags=boot", "flags=esp,boot", "flags=,", "#",
    "# comment", "\t", "\r", "=", "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
    "a19d880f-05fc-4d3b-a006-743f0f84911e", "x=y", "\n", std::string_view("\0", 1)};

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::size_t pos = 0;
    while (pos <= text.size()) {
        const std::size_t nl = std::min(text.find('\n', pos), text.size());
        out.push_back(text.substr(pos, nl - pos));
        pos = nl + 1;
    }
    return out;
}

std::string joined(const std::vector<std::string>& lines) {
    std::string out;
    for (std::size_t i = 0; i < lines.size(); ++i) out += (i ? "\n" : "") + lines[i];
    return out;
}

class mutator {
public:
    explicit mutator(std::uint64_t seed) : rng_(seed) {}

    std::string next() {
        if (pick(20) == 0) return random_text();
        std::string text = corpus[pick(corpus.size())];
        const std::size_t rounds = 1 + pick(4);
        for (std::size_t r = 0; r < rounds; ++r) mutate(text);
        return text;
    }

private:
    std::size_t pick(std::size_t n) {
        return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng_);
    }

    std::string token() { return std::string(tokens[pick(tokens.size())]); }

    std::string random_text() {
        static constexpr std::string_view alphabet =
            "linuxswapextendedlogicalfill0123456789%KMGT =#/\n\t";
        std::string out(pick(80), ' ');
        for (char& c : out) c = alphabet[pick(alphabet.size())];
        return out;
    }

    void mutate(std::string& text) {
        auto lines = lines_of(text);
        switch (pick(9)) {
            case 0:  // flip a byte
                if (!text.empty()) text[pick(text.size())] = static_cast<char>(pick(256));
                return;
            case 1: {  // insert a token, with or without blanks around it
                const std::size_t at = pick(text.size() + 1);
                const std::string t = pick(2) ? " " + token() + " " : token();
                text.insert(at, t);
                return;
            }
            case 2: {  // splice a line of another file
                const auto other = lines_of(corpus[pick(corpus.size())]);
                lines.insert(lines.begin() + static_cast<std::ptrdiff_t>(pick(lines.size() + 1)),
                             other[pick(other.size())]);
                break;
            }
            case 3:  // delete a line
                lines.erase(lines.begin() + static_cast<std::ptrdiff_t>(pick(lines.size())));
                break;
            case 4: {  // duplicate a line
                const std::size_t i = pick(lines.size());
                lines.insert(lines.begin() + static_cast<std::ptrdiff_t>(i), lines[i]);
                break;
            }
            case 5:  // swap two lines
                std::swap(lines[pick(lines.size())], lines[pick(lines.size())]);
                break;
            case 6:  // truncate
                text.resize(pick(text.size() + 1));
                return;
            case 7: {  // replace a word
                const std::size_t i = pick(lines.size());
                std::string& line = lines[i];
                const std::size_t start = line.empty() ? 0 : pick(line.size());
                const std::size_t end = std::min(line.find(' ', start), line.size());
                line.replace(start, end - start, token());
                break;
            }
            default: {  // a line made of random tokens
                std::string line;
                for (std::size_t n = 1 + pick(5); n > 0; --n) line += token() + " ";
                const std::size_t at = pick(lines.size() + 1);
                lines.insert(lines.begin() + static_cast<std::ptrdiff_t>(at), line);
                break;
            }
        }
        text = joined(lines);
    }

    std::mt19937_64 rng_;
};

std::uint64_t fuzz_seed() {
    if (const char* env = std::getenv("KACLONE_FUZZ_SEED"); env && *env)
        return std::strtoull(env, nullptr, 10);
    return static_cast<std::uint64_t>(
        std::chrono::system_clock::now().time_since_epoch().count());
}

std::string escaped(std::string_view s) {
    std::string out;
    for (const char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (c == '\n') out += "\\n";
        else if (c == '\\') out += "\\\\";
        else if (u < 0x20 || u >= 0x7f) {
            static constexpr std::string_view hex = "0123456789abcdef";
            out += "\\x";
            out += hex[u >> 4];
            out += hex[u & 0xf];
        } else out += c;
    }
    return out;
}

desc_file without_lines(desc_file d) {
    for (auto& p : d.partitions) p.line = 0;
    return d;
}

// What every plan guarantees; "" when it holds, else what is wrong.
std::string plan_problem(const layout::plan& p) {
    const std::uint64_t disk_end = p.disk.size_bytes / mib * mib;
    const std::uint64_t usable_end =
        p.table == table_kind::gpt ? std::max(disk_end, mib) - mib : disk_end;
    const layout::planned_partition* extended = nullptr;
    for (const auto& part : p.partitions)
        if (part.type == "extended") extended = &part;
    for (const auto& a : p.partitions) {
        if (a.start_bytes % mib != 0 || a.start_bytes < mib) return "unaligned start";
        if (a.size_bytes == 0 || a.size_bytes % p.disk.sector_bytes != 0) return "bad size";
        if (a.end_bytes() > usable_end) return "beyond the disk";
        const std::uint64_t mbr_end = (std::uint64_t{1} << 32) * p.disk.sector_bytes;
        if (p.table == table_kind::dos && a.end_bytes() > mbr_end) return "beyond 2^32 sectors";
        if (a.place == placement::logical &&
            (!extended || a.start_bytes < extended->start_bytes + mib ||
             a.end_bytes() > extended->end_bytes()))
            return "logical outside the extended partition";
        for (const auto& b : p.partitions) {
            if (&a == &b || a.place != b.place) continue;
            if (a.start_bytes < b.end_bytes() && b.start_bytes < a.end_bytes()) return "overlap";
            if (a.number == b.number) return "same number";
        }
    }
    return "";
}

TEST(DescFuzz, MutatedFilesNeverCrashAndRoundTrip) {
    const std::uint64_t seed = fuzz_seed();
    RecordProperty("seed", std::to_string(seed));
    std::cout << "desc fuzz seed " << seed << " (replay with KACLONE_FUZZ_SEED=" << seed << ")\n";
    mutator gen{seed};
    std::mt19937_64 disk_rng{seed ^ 0x9e3779b97f4a7c15ull};
    const std::array<std::uint64_t, 6> disk_sizes{0, 3 * mib, 100 * mib, 4096 * mib + 4096,
                                                  std::uint64_t{3} << 40, std::uint64_t{1} << 62};

    const auto deadline = std::chrono::steady_clock::now() + time_budget;
    int inputs = 0, accepted = 0, planned = 0;
    for (; inputs < max_inputs && std::chrono::steady_clock::now() < deadline; ++inputs) {
        const std::string text = gen.next();
        const auto first = parse(text, "fuzz.desc");
        if (!first) {
            const error& e = first.error();
            const bool ok = e.code.category() == category() && e.code != errc::does_not_fit &&
                            e.where.starts_with("fuzz.desc:");
            if (!ok) {
                ADD_FAILURE() << "seed " << seed << ": bad error '" << e.message() << "' for \""
                              << escaped(text) << "\"";
                break;
            }
            continue;
        }
        ++accepted;
        const std::string printed = print(*first);
        const auto second = parse(printed, "printed.desc");
        bool round_trips = second && print(*second) == printed &&
                           without_lines(*second) == without_lines(*first);
        if (round_trips) {
            const auto third = parse(print(*second), "again.desc");
            round_trips = third && *third == *second;
        }
        if (!round_trips) {
            ADD_FAILURE() << "seed " << seed << ": no round trip for \"" << escaped(text)
                          << "\", printed \"" << escaped(printed) << "\""
                          << (second ? "" : ": " + second.error().message());
            break;
        }
        const layout::disk_facts disk{"/dev/fuzz", disk_sizes[disk_rng() % disk_sizes.size()],
                                      disk_rng() % 4 == 0 ? 4096u : 512u};
        const auto p = layout::make_plan(*first, disk, "fuzz.desc");
        if (!p && p.error().code == errc::no_partitions) {  // the one refusal of a valid file
            if (!first->partitions.empty())
                ADD_FAILURE() << "seed " << seed << ": no_partitions for \"" << escaped(text) << "\"";
            continue;
        }
        if (!p) {
            // The MBR limit is to blame only on dos, and only on a disk larger than it.
            const bool mbr_limit_applies =
                first->table == table_kind::dos &&
                disk.size_bytes > (std::uint64_t{1} << 32) * disk.sector_bytes;
            const bool blames_mbr_limit =
                p.error().where.find("dos partition table") != std::string::npos;
            if (p.error().code != errc::does_not_fit || (blames_mbr_limit && !mbr_limit_applies)) {
                ADD_FAILURE() << "seed " << seed << ": plan error '" << p.error().message()
                              << "' for \"" << escaped(text) << "\"";
                break;
            }
            continue;
        }
        ++planned;
        if (const std::string problem = plan_problem(*p); !problem.empty()) {
            ADD_FAILURE() << "seed " << seed << ": " << problem << " in the plan of \""
                          << escaped(text) << "\" on " << disk.size_bytes << " bytes:\n"
                          << layout::format_plan(*p);
            break;
        }
    }
    std::cout << "desc fuzz: " << inputs << " inputs, " << accepted << " parsed, " << planned
              << " planned\n";
    RecordProperty("inputs", inputs);
    EXPECT_GT(accepted, 0);
    EXPECT_LT(accepted, inputs);
}

}  // namespace
}  // namespace kaclone::desc
