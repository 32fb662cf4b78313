// mapped_region: anonymous and mirrored mappings.
#include <kaclone/mapped_region.hpp>

#include <algorithm>
#include <cstring>

#include <gtest/gtest.h>

#include <kaclone/error_category.hpp>

namespace kaclone {
namespace {

TEST(MappedRegion, AnonymousIsZeroedAndPageRounded) {
    auto region = mapped_region::anonymous(100);

    ASSERT_TRUE(region.has_value()) << region.error().message();
    EXPECT_EQ(region->size(), page_bytes());
    EXPECT_TRUE(std::all_of(region->data(), region->data() + region->size(),
                            [](std::byte b) { return b == std::byte{0}; }));
}

TEST(MappedRegion, ZeroBytesIsRefused) {
    const auto region = mapped_region::anonymous(0);

    ASSERT_FALSE(region.has_value());
    EXPECT_EQ(region.error().code, errc::out_of_range);
}

TEST(MappedRegion, MirroredSeesWritesInBothCopies) {
    const std::size_t size = 4 * page_bytes();
    auto region = mapped_region::mirrored(size);
    ASSERT_TRUE(region.has_value()) << region.error().message();
    std::byte* data = region->data();

    // A write that wraps: starts 3 bytes before the end of the first copy.
    std::memcpy(data + size - 3, "abcdef", 6);

    EXPECT_EQ(std::memcmp(data + size - 3, "abcdef", 6), 0);
    EXPECT_EQ(std::memcmp(data, "def", 3), 0);              // the wrapped tail, seen at the start
    EXPECT_EQ(std::memcmp(data + 2 * size - 3, "abc", 3), 0);  // the head, seen in the mirror
}

TEST(MappedRegion, MirroredRefusesPartialPages) {
    const auto region = mapped_region::mirrored(page_bytes() + 1);

    ASSERT_FALSE(region.has_value());
    EXPECT_EQ(region.error().code, errc::out_of_range);
}

TEST(MappedRegion, MoveKeepsTheMemory) {
    auto made = mapped_region::anonymous(page_bytes());
    ASSERT_TRUE(made.has_value());
    mapped_region a = *std::move(made);
    std::byte* data = a.data();
    data[0] = std::byte{42};

    mapped_region b = std::move(a);

    EXPECT_EQ(a.data(), nullptr);  // NOLINT(bugprone-use-after-move)
    EXPECT_EQ(b.data(), data);
    EXPECT_EQ(b.data()[0], std::byte{42});
}

}  // namespace
}  // namespace kaclone
