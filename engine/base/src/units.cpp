// Parsing and printing of sizes and durations.
#include <kaclone/units.hpp>

#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>

#include <kaclone/error_category.hpp>

namespace kaclone {
namespace {

std::string lower(std::string_view text) {
    std::string out(text);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

struct number_and_unit {
    double value;
    std::string unit;  // lower case, surrounding blanks removed
};

// Splits "1.5 GiB" into 1.5 and "gib". Only digits and one '.' make the number: no sign,
// no exponent, no hex, so "-1" and "1e3" are bad numbers rather than surprises.
result<number_and_unit> split(std::string_view text) {
    const std::string quoted = "'" + std::string(text) + "'";
    std::size_t i = 0;
    while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
        ++i;
    const std::string_view digits = text.substr(0, i);
    if (digits.empty() || digits == "." || digits.find('.') != digits.rfind('.'))
        return error{make_error_code(errc::bad_number), quoted};
    double value = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (ec != std::errc{} || end != digits.data() + digits.size())
        return error{make_error_code(errc::bad_number), quoted};
    std::string_view rest = text.substr(i);
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    while (!rest.empty() && rest.back() == ' ') rest.remove_suffix(1);
    return number_and_unit{value, lower(rest)};
}

result<std::uint64_t> scale(const number_and_unit& n, double unit, std::string_view text) {
    const double bytes = n.value * unit;
    if (bytes >= 18446744073709551616.0)  // 2^64: the first value a uint64_t cannot hold
        return error{make_error_code(errc::out_of_range), "'" + std::string(text) + "'"};
    if (bytes != std::floor(bytes))
        return error{make_error_code(errc::bad_number),
                     "'" + std::string(text) + "' is not a whole number of bytes"};
    return static_cast<std::uint64_t>(bytes);
}

}  // namespace

std::optional<std::uint64_t> parse_whole(std::string_view text, std::uint64_t min, std::uint64_t max) {
    std::uint64_t value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    // from_chars takes no '+' or blank, but a '-' it does: a leading digit is required.
    if (text.empty() || !std::isdigit(static_cast<unsigned char>(text.front())) || ec != std::errc{} ||
        end != text.data() + text.size() || value < min || value > max)
        return std::nullopt;
    return value;
}

result<std::uint64_t> parse_bytes(std::string_view text, std::uint64_t default_unit) {
    auto n = split(text);
    if (!n) return std::move(n).error();
    if (n->unit.empty()) return scale(*n, static_cast<double>(default_unit), text);

    static constexpr std::array<char, 6> prefixes{'b', 'k', 'm', 'g', 't', 'p'};
    const std::string& u = n->unit;
    for (std::size_t power = 0; power < prefixes.size(); ++power) {
        if (u.front() != prefixes[power]) continue;
        const std::string_view tail = std::string_view(u).substr(1);
        const bool plain_bytes = power == 0 && tail.empty();
        const bool binary = power > 0 && (tail.empty() || tail == "b" || tail == "ib");
        if (!plain_bytes && !binary) break;
        return scale(*n, std::ldexp(1.0, static_cast<int>(10 * power)), text);
    }
    return error{make_error_code(errc::bad_unit),
                 "'" + std::string(text) + "' (use B, K, M, G, T or P)"};
}

result<std::chrono::milliseconds> parse_duration(std::string_view text) {
    auto n = split(text);
    if (!n) return std::move(n).error();
    double ms_per_unit = 0;
    if (n->unit.empty() || n->unit == "s") ms_per_unit = 1000;
    else if (n->unit == "ms") ms_per_unit = 1;
    else if (n->unit == "m" || n->unit == "min") ms_per_unit = 60'000;
    else if (n->unit == "h") ms_per_unit = 3'600'000;
    else
        return error{make_error_code(errc::bad_unit),
                     "'" + std::string(text) + "' (use ms, s, m or h)"};
    const double ms = std::round(n->value * ms_per_unit);
    if (ms > static_cast<double>(std::numeric_limits<std::int64_t>::max() / 2))
        return error{make_error_code(errc::out_of_range), "'" + std::string(text) + "'"};
    return std::chrono::milliseconds{static_cast<std::int64_t>(ms)};
}

std::string format_bytes(std::uint64_t bytes) {
    static constexpr std::array<const char*, 7> units{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (bytes < 1024) return std::to_string(bytes) + " B";
    double value = static_cast<double>(bytes);
    std::size_t unit = 0;
    while (value >= 1024 && unit + 1 < units.size()) {
        value /= 1024;
        ++unit;
    }
    std::array<char, 32> out{};
    // Exact multiples read best without decimals ("64 MiB"), others keep three digits.
    const int decimals = value == std::floor(value) ? 0 : value < 10 ? 2 : value < 100 ? 1 : 0;
    std::snprintf(out.data(), out.size(), "%.*f %s", decimals, value, units[unit]);
    return out.data();
}

std::string format_rate(double bytes_per_second) {
    std::array<char, 32> out{};
    std::snprintf(out.data(), out.size(), "%.1f MB/s", bytes_per_second / 1e6);
    return out.data();
}

}  // namespace kaclone
