// parse_bytes, parse_duration, format_bytes, format_rate.
#include <kaclone/units.hpp>

#include <ostream>

#include <gtest/gtest.h>

#include <kaclone/error_category.hpp>

namespace kaclone {
namespace {

struct bytes_case {
    const char* text;
    std::uint64_t bytes;
};

// Test names show the text being parsed, not the bytes of the struct.
void PrintTo(const bytes_case& c, std::ostream* os) { *os << '"' << c.text << '"'; }

class ParseBytes : public ::testing::TestWithParam<bytes_case> {};

TEST_P(ParseBytes, Accepts) {
    const auto parsed = parse_bytes(GetParam().text);

    ASSERT_TRUE(parsed.has_value()) << parsed.error().message();
    EXPECT_EQ(*parsed, GetParam().bytes);
}

INSTANTIATE_TEST_SUITE_P(
    Units, ParseBytes,
    ::testing::Values(bytes_case{"0", 0}, bytes_case{"4096", 4096}, bytes_case{"17B", 17},
                      bytes_case{"1k", 1024}, bytes_case{"1K", 1024}, bytes_case{"1KiB", 1024},
                      bytes_case{"1KB", 1024}, bytes_case{"64M", 64ull << 20},
                      bytes_case{"256MiB", 256ull << 20}, bytes_case{"1.5G", 3ull << 29},
                      bytes_case{"2 T", 2ull << 40}, bytes_case{"1P", 1ull << 50},
                      bytes_case{"15P", 15ull << 50}));

TEST(ParseBytesDefaultUnit, BareNumberUsesIt) {
    const auto parsed = parse_bytes("3500", 1 << 20);

    ASSERT_TRUE(parsed.has_value());
    EXPECT_EQ(*parsed, 3500ull << 20);
}

TEST(ParseBytesDefaultUnit, ExplicitUnitWins) {
    const auto parsed = parse_bytes("2G", 1 << 20);

    ASSERT_TRUE(parsed.has_value());
    EXPECT_EQ(*parsed, 2ull << 30);
}

struct bad_case {
    const char* text;
    errc code;
    const char* where;
};

void PrintTo(const bad_case& c, std::ostream* os) { *os << '"' << c.text << '"'; }

class ParseBytesRejects : public ::testing::TestWithParam<bad_case> {};

TEST_P(ParseBytesRejects, WithExactError) {
    const auto parsed = parse_bytes(GetParam().text);

    ASSERT_FALSE(parsed.has_value());
    EXPECT_EQ(parsed.error().code, GetParam().code);
    EXPECT_EQ(parsed.error().where, GetParam().where);
}

INSTANTIATE_TEST_SUITE_P(
    Units, ParseBytesRejects,
    ::testing::Values(bad_case{"", errc::bad_number, "''"},
                      bad_case{"M", errc::bad_number, "'M'"},
                      bad_case{"-1", errc::bad_number, "'-1'"},
                      bad_case{"1.2.3", errc::bad_number, "'1.2.3'"},
                      bad_case{".", errc::bad_number, "'.'"},
                      bad_case{"1.5", errc::bad_number, "'1.5' is not a whole number of bytes"},
                      bad_case{"12X", errc::bad_unit, "'12X' (use B, K, M, G, T or P)"},
                      bad_case{"1Bi", errc::bad_unit, "'1Bi' (use B, K, M, G, T or P)"},
                      bad_case{"1MX", errc::bad_unit, "'1MX' (use B, K, M, G, T or P)"},
                      bad_case{"16384P", errc::out_of_range, "'16384P'"},
                      bad_case{"99999999999999999999", errc::out_of_range, "'99999999999999999999'"}));

TEST(ParseWhole, DigitsWithinTheBoundsOnly) {
    EXPECT_EQ(parse_whole("1", 1, 65535), 1u);
    EXPECT_EQ(parse_whole("65535", 1, 65535), 65535u);
    EXPECT_EQ(parse_whole("007", 1, 10), 7u);
    for (const char* bad : {"", "0", "65536", "99999999999999999999999", "-1", "+1", " 1", "1 ", "1k", "0x10", "1.0"})
        EXPECT_EQ(parse_whole(bad, 1, 65535), std::nullopt) << "'" << bad << "'";
}

TEST(ParseDuration, AcceptsUnits) {
    using std::chrono::milliseconds;
    EXPECT_EQ(*parse_duration("60"), milliseconds{60'000});
    EXPECT_EQ(*parse_duration("5s"), milliseconds{5'000});
    EXPECT_EQ(*parse_duration("500ms"), milliseconds{500});
    EXPECT_EQ(*parse_duration("1.5s"), milliseconds{1'500});
    EXPECT_EQ(*parse_duration("2m"), milliseconds{120'000});
    EXPECT_EQ(*parse_duration("1h"), milliseconds{3'600'000});
}

TEST(ParseDuration, RejectsUnknownUnit) {
    const auto parsed = parse_duration("5d");

    ASSERT_FALSE(parsed.has_value());
    EXPECT_EQ(parsed.error().code, errc::bad_unit);
    EXPECT_EQ(parsed.error().where, "'5d' (use ms, s, m or h)");
}

TEST(ParseDuration, RejectsMissingNumber) {
    const auto parsed = parse_duration("s");

    ASSERT_FALSE(parsed.has_value());
    EXPECT_EQ(parsed.error().code, errc::bad_number);
}

TEST(FormatBytes, UsesThreeSignificantDigits) {
    EXPECT_EQ(format_bytes(0), "0 B");
    EXPECT_EQ(format_bytes(1023), "1023 B");
    EXPECT_EQ(format_bytes(1024), "1 KiB");
    EXPECT_EQ(format_bytes(1536), "1.50 KiB");
    EXPECT_EQ(format_bytes(12'900'000), "12.3 MiB");
    EXPECT_EQ(format_bytes(512ull << 20), "512 MiB");
    EXPECT_EQ(format_bytes(3ull << 29), "1.50 GiB");
}

TEST(FormatRate, IsDecimalMegabytes) {
    EXPECT_EQ(format_rate(0), "0.0 MB/s");
    EXPECT_EQ(format_rate(112'400'000), "112.4 MB/s");
}

}  // namespace
}  // namespace kaclone
