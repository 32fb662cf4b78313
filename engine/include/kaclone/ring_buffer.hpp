// ring_buffer: the one bounded buffer of a node. One producer, a fixed number of readers,
// memory mirrored so that every range is contiguous. Single-threaded, no I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include <kaclone/mapped_region.hpp>
#include <kaclone/result.hpp>

namespace kaclone {

// Positions are absolute byte counts since the start (they never wrap); the memory at position
// p is data()[p % capacity]. The producer may run ahead of the slowest reader by at most the
// capacity. Flow control: once the producer has filled the ring, writable() stays empty until
// the slowest reader has freed `low_watermark_bytes`, so a slow reader gets big, cheap writes
// instead of a trickle of small ones.
class ring_buffer {
public:
    // `capacity_bytes` is rounded up to whole pages; `readers` >= 1.
    static result<ring_buffer> create(std::size_t capacity_bytes, std::size_t readers,
                                      std::size_t low_watermark_bytes);

    std::size_t capacity() const noexcept { return memory_.size(); }

    // Up to `max_bytes` of contiguous free space at write_position(), or an empty span while
    // the producer is paused (see above). Valid until the next commit().
    std::span<std::byte> writable(std::size_t max_bytes) noexcept;
    // Free bytes right now, ignoring the pause.
    std::size_t free_bytes() const noexcept;
    // Publishes `bytes` written into the span from writable().
    void commit(std::size_t bytes) noexcept;
    std::uint64_t write_position() const noexcept { return write_; }

    // What reader `reader` has not consumed yet, contiguous.
    std::span<std::byte> readable(std::size_t reader) const noexcept;
    void consume(std::size_t reader, std::size_t bytes) noexcept;
    std::uint64_t read_position(std::size_t reader) const noexcept { return readers_[reader]; }

    // A reader that starts at `position` (between the slowest reader and the write position:
    // those bytes are still held), for a consumer that comes later (a node's new child). Its
    // index stays valid until remove_reader(); indexes of removed readers are used again.
    std::size_t add_reader(std::uint64_t position) noexcept;
    // The reader no longer holds anything. At least one reader always remains.
    void remove_reader(std::size_t reader) noexcept;

    // The retained bytes [position, position + bytes): between the slowest reader and the
    // write position. Lends memory valid until those bytes are consumed by every reader.
    std::span<std::byte> at(std::uint64_t position, std::size_t bytes) const noexcept;

private:
    ring_buffer(mapped_region memory, std::size_t readers, std::size_t low_watermark_bytes);
    std::uint64_t slowest() const noexcept;

    mapped_region memory_;
    static constexpr std::uint64_t removed = ~0ull;  // a free reader slot: holds nothing
    std::vector<std::uint64_t> readers_;
    std::uint64_t write_ = 0;
    std::size_t low_watermark_;
    bool paused_ = false;
};

}  // namespace kaclone
