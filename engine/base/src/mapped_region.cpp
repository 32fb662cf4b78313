// mapped_region: plain anonymous mappings and mirrored (double) mappings of a memfd.
#include <kaclone/mapped_region.hpp>

#include <sys/mman.h>
#include <unistd.h>

#include <kaclone/error_category.hpp>
#include <kaclone/unique_fd.hpp>

namespace kaclone {

std::size_t page_bytes() noexcept {
    static const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    return page;
}

namespace {
std::size_t round_up_to_page(std::size_t bytes) noexcept {
    const std::size_t page = page_bytes();
    return (bytes + page - 1) / page * page;
}
}  // namespace

result<mapped_region> mapped_region::anonymous(std::size_t bytes) {
    if (bytes == 0) return error{make_error_code(errc::out_of_range), "map 0 bytes"};
    const std::size_t size = round_up_to_page(bytes);
    void* base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) return last_sys_error("mmap " + std::to_string(size) + " bytes");
    return mapped_region{base, size, size};
}

result<mapped_region> mapped_region::mirrored(std::size_t bytes) {
    if (bytes == 0 || bytes % page_bytes() != 0)
        return error{make_error_code(errc::out_of_range),
                     "mirrored mapping of " + std::to_string(bytes) + " bytes (must be a non-zero "
                     "multiple of the page size)"};
    unique_fd memory{::memfd_create("kaclone-ring", MFD_CLOEXEC)};
    if (!memory) return last_sys_error("memfd_create");
    if (::ftruncate(memory.get(), static_cast<off_t>(bytes)) != 0)
        return last_sys_error("ftruncate memfd to " + std::to_string(bytes) + " bytes");

    // Reserve 2 * bytes of address space first, then map the memfd over each half with
    // MAP_FIXED: only inside our own reservation, so nothing else can be replaced.
    void* base = ::mmap(nullptr, 2 * bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) return last_sys_error("reserve " + std::to_string(2 * bytes) + " bytes");
    mapped_region region{base, 2 * bytes, bytes};  // unmaps the reservation on early return
    auto* second = static_cast<std::byte*>(base) + bytes;
    for (void* half : {base, static_cast<void*>(second)}) {
        void* at = ::mmap(half, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, memory.get(), 0);
        if (at == MAP_FAILED) return last_sys_error("map memfd twice");
    }
    return region;  // the mappings keep the memfd's pages alive after `memory` closes
}

mapped_region& mapped_region::operator=(mapped_region&& other) noexcept {
    if (this != &other) {
        reset();
        base_ = std::exchange(other.base_, nullptr);
        mapped_bytes_ = std::exchange(other.mapped_bytes_, 0);
        size_ = std::exchange(other.size_, 0);
    }
    return *this;
}

void mapped_region::reset() noexcept {
    if (base_ != nullptr) ::munmap(base_, mapped_bytes_);
    base_ = nullptr;
    mapped_bytes_ = 0;
    size_ = 0;
}

}  // namespace kaclone
