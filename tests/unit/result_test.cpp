// result<T>, error messages and the base error category.
#include <kaclone/result.hpp>

#include <cerrno>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include <kaclone/error_category.hpp>

namespace kaclone {
namespace {

result<int> parse_digit(char c) {
    if (c < '0' || c > '9') return error{make_error_code(errc::bad_number), std::string(1, c)};
    return c - '0';
}

TEST(Result, HoldsValue) {
    const auto r = parse_digit('7');

    ASSERT_TRUE(r.has_value());
    EXPECT_TRUE(static_cast<bool>(r));
    EXPECT_EQ(*r, 7);
}

TEST(Result, HoldsErrorWithPlace) {
    const auto r = parse_digit('x');

    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, errc::bad_number);
    EXPECT_EQ(r.error().where, "x");
    EXPECT_EQ(r.error().message(), "x: not a number");
}

TEST(Result, MovesOutMoveOnlyValue) {
    result<std::unique_ptr<int>> r = std::make_unique<int>(42);

    std::unique_ptr<int> p = *std::move(r);

    ASSERT_NE(p, nullptr);
    EXPECT_EQ(*p, 42);
}

TEST(Result, ArrowReachesMembers) {
    const result<std::string> r = std::string("abc");

    EXPECT_EQ(r->size(), 3u);
}

TEST(ResultVoid, DefaultIsSuccess) {
    const result<void> r;

    EXPECT_TRUE(r.has_value());
}

TEST(ResultVoid, HoldsError) {
    const result<void> r = sys_error(ENOENT, "open /nonexistent");

    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, std::error_code(ENOENT, std::system_category()));
    EXPECT_EQ(r.error().message(), "open /nonexistent: No such file or directory");
}

TEST(Error, MessageWithoutPlaceIsJustTheCode) {
    const error e{make_error_code(errc::not_implemented), ""};

    EXPECT_EQ(e.message(), "not implemented yet");
}

TEST(ErrorCategory, NamesEveryValue) {
    EXPECT_STREQ(category().name(), "kaclone");
    EXPECT_EQ(make_error_code(errc::bad_unit).message(), "unknown unit");
    EXPECT_EQ(make_error_code(errc::out_of_range).message(), "value out of range");
}

TEST(ErrorCategory, ComparesByEnum) {
    const std::error_code code = errc::bad_number;

    EXPECT_EQ(code, errc::bad_number);
    EXPECT_NE(code, errc::bad_unit);
    EXPECT_NE(code, std::error_code(1, std::system_category()));
}

TEST(ResultDeathTest, ValueOfErrorIsABug) {
    const auto r = parse_digit('x');

    EXPECT_DEATH(static_cast<void>(*r), "assertion 'has_value\\(\\)' failed");
}

}  // namespace
}  // namespace kaclone
