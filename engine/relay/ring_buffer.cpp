// ring_buffer over a mirrored mapping.
#include <kaclone/ring_buffer.hpp>

#include <algorithm>

#include <kaclone/error_category.hpp>

namespace kaclone {

result<ring_buffer> ring_buffer::create(std::size_t capacity_bytes, std::size_t readers,
                                        std::size_t low_watermark_bytes) {
    if (readers == 0) return error{make_error_code(errc::out_of_range), "ring buffer without readers"};
    const std::size_t page = page_bytes();
    const std::size_t capacity = std::max(page, (capacity_bytes + page - 1) / page * page);
    auto memory = mapped_region::mirrored(capacity);
    if (!memory) return std::move(memory).error();
    return ring_buffer{*std::move(memory), readers, std::min(low_watermark_bytes, capacity)};
}

ring_buffer::ring_buffer(mapped_region memory, std::size_t readers, std::size_t low_watermark_bytes)
    : memory_(std::move(memory)), readers_(readers, 0), low_watermark_(low_watermark_bytes) {}

std::uint64_t ring_buffer::slowest() const noexcept {
    return *std::min_element(readers_.begin(), readers_.end());
}

std::size_t ring_buffer::free_bytes() const noexcept {
    return capacity() - static_cast<std::size_t>(write_ - slowest());
}

std::span<std::byte> ring_buffer::writable(std::size_t max_bytes) noexcept {
    const std::size_t free = free_bytes();
    if (paused_ && free >= low_watermark_) paused_ = false;
    if (paused_) return {};
    return {memory_.data() + write_ % capacity(), std::min(free, max_bytes)};
}

void ring_buffer::commit(std::size_t bytes) noexcept {
    KACLONE_ASSERT(bytes <= free_bytes());
    write_ += bytes;
    if (free_bytes() == 0) paused_ = true;
}

std::span<std::byte> ring_buffer::readable(std::size_t reader) const noexcept {
    const std::uint64_t pos = readers_[reader];
    return {memory_.data() + pos % capacity(), static_cast<std::size_t>(write_ - pos)};
}

void ring_buffer::consume(std::size_t reader, std::size_t bytes) noexcept {
    KACLONE_ASSERT(bytes <= write_ - readers_[reader]);
    readers_[reader] += bytes;
}

std::size_t ring_buffer::add_reader(std::uint64_t position) noexcept {
    KACLONE_ASSERT(position >= slowest() && position <= write_);
    const auto free = std::find(readers_.begin(), readers_.end(), removed);
    if (free != readers_.end()) {
        *free = position;
        return static_cast<std::size_t>(free - readers_.begin());
    }
    readers_.push_back(position);
    return readers_.size() - 1;
}

void ring_buffer::remove_reader(std::size_t reader) noexcept {
    KACLONE_ASSERT(reader < readers_.size() && readers_[reader] != removed);
    readers_[reader] = removed;
    KACLONE_ASSERT(std::any_of(readers_.begin(), readers_.end(), [](std::uint64_t p) { return p != removed; }));
}

std::span<std::byte> ring_buffer::at(std::uint64_t position, std::size_t bytes) const noexcept {
    KACLONE_ASSERT(position >= slowest() && position + bytes <= write_);
    return {memory_.data() + position % capacity(), bytes};
}

}  // namespace kaclone
