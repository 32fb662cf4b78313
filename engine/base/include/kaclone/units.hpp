// Sizes and durations as people write them on a command line ("64M", "1.5G", "500ms", "60s"),
// and back as people read them.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <kaclone/result.hpp>

namespace kaclone {

// Parses a byte count: a number (decimals allowed with a unit) and an optional unit
// K, M, G, T, P (powers of 1024; "KiB", "KB", "k" are the same) or B. A bare number counts
// `default_unit` bytes (1, or 1 << 20 for the desc format's MB). Errors: errc::bad_number,
// errc::bad_unit, errc::out_of_range, with `where` quoting the text.
result<std::uint64_t> parse_bytes(std::string_view text, std::uint64_t default_unit = 1);

// Parses a duration: a number with an optional unit ms, s, m, h (a bare number is seconds).
// Same errors as parse_bytes.
result<std::chrono::milliseconds> parse_duration(std::string_view text);

// A whole decimal number from `min` to `max`, written with digits only (no sign, blank or
// unit): a count or a port on a command line. Nothing otherwise.
std::optional<std::uint64_t> parse_whole(std::string_view text, std::uint64_t min, std::uint64_t max);

// "512 B", "64 MiB", "1.50 GiB", "12.3 MiB": binary units, exact multiples without decimals,
// others with three significant digits.
std::string format_bytes(std::uint64_t bytes);

// "112.4 MB/s" (decimal megabytes per second, as network tools print rates).
std::string format_rate(double bytes_per_second);

}  // namespace kaclone
