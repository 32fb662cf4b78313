// ring_buffer: accounting of free space, readers, wrap-around and the low watermark.
#include <kaclone/ring_buffer.hpp>

#include <cstring>
#include <numeric>

#include <gtest/gtest.h>

#include <kaclone/mapped_region.hpp>

namespace kaclone {
namespace {

ring_buffer make(std::size_t readers, std::size_t low_watermark) {
    auto r = ring_buffer::create(4 * page_bytes(), readers, low_watermark);
    EXPECT_TRUE(r.has_value());
    return *std::move(r);
}

TEST(RingBuffer, StartsEmptyWithFullCapacityFree) {
    auto ring = make(1, 0);

    EXPECT_EQ(ring.capacity(), 4 * page_bytes());
    EXPECT_EQ(ring.free_bytes(), ring.capacity());
    EXPECT_TRUE(ring.readable(0).empty());
}

TEST(RingBuffer, CommitMakesBytesReadable) {
    auto ring = make(1, 0);

    auto w = ring.writable(5);
    std::memcpy(w.data(), "hello", 5);
    ring.commit(5);

    ASSERT_EQ(ring.readable(0).size(), 5u);
    EXPECT_EQ(std::memcmp(ring.readable(0).data(), "hello", 5), 0);
    EXPECT_EQ(ring.free_bytes(), ring.capacity() - 5);
}

TEST(RingBuffer, SlowestReaderBoundsFreeSpace) {
    auto ring = make(2, 0);
    ring.commit(ring.writable(1000).size());

    ring.consume(0, 1000);

    EXPECT_EQ(ring.free_bytes(), ring.capacity() - 1000);
    ring.consume(1, 600);
    EXPECT_EQ(ring.free_bytes(), ring.capacity() - 400);
}

TEST(RingBuffer, AddedReaderHoldsFromItsPositionAndRemovedHoldsNothing) {
    auto ring = make(1, 0);
    ring.commit(ring.writable(1000).size());
    ring.consume(0, 300);

    const std::size_t late = ring.add_reader(500);  // a child that resumes at 500

    EXPECT_EQ(ring.read_position(late), 500u);
    EXPECT_EQ(ring.readable(late).size(), 500u);
    ring.consume(0, 700);  // the first reader passes it: the late one now bounds free space
    EXPECT_EQ(ring.free_bytes(), ring.capacity() - 500);
    ring.remove_reader(late);
    EXPECT_EQ(ring.free_bytes(), ring.capacity());
    EXPECT_EQ(ring.add_reader(1000), late);  // the slot is used again
}

TEST(RingBuffer, WrappingWriteIsContiguous) {
    auto ring = make(1, 0);
    const std::size_t cap = ring.capacity();
    ring.commit(ring.writable(cap - 3).size());
    ring.consume(0, cap - 3);

    auto w = ring.writable(10);
    ASSERT_EQ(w.size(), 10u);
    std::memcpy(w.data(), "0123456789", 10);
    ring.commit(10);

    ASSERT_EQ(ring.readable(0).size(), 10u);
    EXPECT_EQ(std::memcmp(ring.readable(0).data(), "0123456789", 10), 0);
    EXPECT_EQ(std::memcmp(ring.at(cap, 7).data(), "3456789", 7), 0);  // the wrapped part
}

TEST(RingBuffer, PausesWhenFullAndResumesAtLowWatermark) {
    const std::size_t low = 2 * page_bytes();
    auto ring = make(1, low);
    ring.commit(ring.writable(ring.capacity()).size());
    EXPECT_TRUE(ring.writable(1).empty());

    ring.consume(0, low - 1);
    EXPECT_TRUE(ring.writable(1).empty()) << "below the low watermark the producer stays paused";

    ring.consume(0, 1);
    EXPECT_EQ(ring.writable(ring.capacity()).size(), low);
}

TEST(RingBuffer, WritableIsCappedByFreeSpace) {
    auto ring = make(1, 0);
    ring.commit(ring.writable(100).size());

    EXPECT_EQ(ring.writable(ring.capacity()).size(), ring.capacity() - 100);
}

class RingBufferSizes : public ::testing::TestWithParam<std::size_t> {};

// Pushing `size` bytes at a time through the ring many times keeps every byte in order.
TEST_P(RingBufferSizes, BytesComeOutInOrder) {
    auto ring = make(1, 0);
    const std::size_t chunk = GetParam();
    std::uint8_t next_in = 0, next_out = 0;
    for (int round = 0; round < 50; ++round) {
        auto w = ring.writable(chunk);
        for (auto& b : w) b = static_cast<std::byte>(next_in++);
        ring.commit(w.size());
        for (std::byte b : ring.readable(0)) ASSERT_EQ(b, static_cast<std::byte>(next_out++));
        ring.consume(0, ring.readable(0).size());
    }
}

INSTANTIATE_TEST_SUITE_P(Chunks, RingBufferSizes,
                         ::testing::Values(std::size_t{1}, page_bytes() - 1, page_bytes(), page_bytes() + 1,
                                           4 * page_bytes(), 3 * page_bytes() + 17));

TEST(RingBuffer, NoReadersIsAnError) {
    const auto r = ring_buffer::create(page_bytes(), 0, 0);

    EXPECT_FALSE(r.has_value());
}

}  // namespace
}  // namespace kaclone
