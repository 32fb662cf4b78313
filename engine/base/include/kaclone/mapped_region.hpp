// mapped_region: the one owner of a memory mapping, plain or mirrored (a ring's double mapping).
#pragma once

#include <cstddef>
#include <span>
#include <utility>

#include <kaclone/result.hpp>

namespace kaclone {

// Move-only owner of an mmap'ed range; unmaps it when it goes. Lends its memory as a span that
// is valid as long as this object lives (moving the object keeps the same memory).
class mapped_region {
public:
    // `bytes` of zeroed, private, anonymous memory (rounded up to whole pages).
    static result<mapped_region> anonymous(std::size_t bytes);

    // `bytes` (a multiple of the page size) of memory mapped twice, back to back: writing at
    // data()[i] is visible at data()[i + size()]. A ring buffer over it can hand out any
    // wrapping range of up to size() bytes as one contiguous span. The memory is a memfd, so it
    // counts against the process's RSS once, not twice.
    static result<mapped_region> mirrored(std::size_t bytes);

    mapped_region() noexcept = default;
    mapped_region(mapped_region&& other) noexcept
        : base_(std::exchange(other.base_, nullptr)),
          mapped_bytes_(std::exchange(other.mapped_bytes_, 0)),
          size_(std::exchange(other.size_, 0)) {}
    mapped_region& operator=(mapped_region&& other) noexcept;
    mapped_region(const mapped_region&) = delete;
    mapped_region& operator=(const mapped_region&) = delete;
    ~mapped_region() { reset(); }

    // The usable bytes: the whole mapping, or one copy of a mirrored one. Borrowed.
    std::byte* data() const noexcept { return static_cast<std::byte*>(base_); }
    std::size_t size() const noexcept { return size_; }
    std::span<std::byte> bytes() const noexcept { return {data(), size_}; }

    void reset() noexcept;

private:
    mapped_region(void* base, std::size_t mapped_bytes, std::size_t size) noexcept
        : base_(base), mapped_bytes_(mapped_bytes), size_(size) {}

    void* base_ = nullptr;
    std::size_t mapped_bytes_ = 0;  // what munmap must release (2 * size_ when mirrored)
    std::size_t size_ = 0;
};

// The system page size in bytes.
std::size_t page_bytes() noexcept;

}  // namespace kaclone
