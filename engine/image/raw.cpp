// Raw partition copies with all-zero blocks skipped, boot code (MBR bytes 0..445), and the
// image module's error category.
#include <kaclone/image.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <kaclone/unique_fd.hpp>

namespace kaclone::image {
namespace {

const char* describe(errc e) noexcept {
    switch (e) {
        case errc::bad_exclude: return "an excluded path must be a directory inside the tree";
        case errc::not_a_directory: return "not a directory";
        case errc::archive_failed: return "the tar stream could not be read or written";
        case errc::refused_entries: return "entries that would write outside the target root were refused";
        case errc::failed_entries: return "entries could not be created on the target";
        case errc::bad_mbr_size: return "boot code must be exactly 446 bytes";
    }
    return "unknown image error";
}

constexpr std::size_t block_bytes = 4096;
constexpr std::size_t buffer_bytes = 1 << 20;  // a multiple of block_bytes

bool all_zero(const std::byte* p, std::size_t n) noexcept {
    return n == 0 || (p[0] == std::byte{0} && std::memcmp(p, p + 1, n - 1) == 0);
}

result<void> pwrite_all(int fd, const std::byte* data, std::size_t n, std::uint64_t offset) {
    while (n > 0) {
        const ssize_t w = ::pwrite(fd, data, n, static_cast<off_t>(offset));
        if (w < 0) {
            if (errno == EINTR) continue;
            return last_sys_error("write at offset " + std::to_string(offset));
        }
        data += w;
        n -= static_cast<std::size_t>(w);
        offset += static_cast<std::uint64_t>(w);
    }
    return {};
}

// Fills `buf` from `fd` until it is full or the input ends; the count read.
result<std::size_t> read_full(int fd, std::byte* buf, std::size_t n, std::uint64_t offset) {
    std::size_t got = 0;
    while (got < n) {
        const ssize_t r = ::read(fd, buf + got, n - got);
        if (r == 0) break;
        if (r < 0) {
            if (errno == EINTR) continue;
            return last_sys_error("read at offset " + std::to_string(offset + got));
        }
        got += static_cast<std::size_t>(r);
    }
    return got;
}

enum class output_kind { file, device, other };

// A run of zero bytes at `offset` that is not written as data: a hole in a file (nothing to
// do, the file was truncated), a discard on a device, or zeros.
result<void> put_zeros(int fd, output_kind kind, zero_blocks zeros, std::uint64_t offset, std::uint64_t n) {
    if (kind == output_kind::file && zeros != zero_blocks::write) return {};
    if (kind == output_kind::device && zeros == zero_blocks::discard && n % block_bytes == 0) {
        std::uint64_t range[2] = {offset, n};
        if (::ioctl(fd, BLKDISCARD, &range) == 0) return {};
        // Not every device discards (or discards to zeros); zeros then, so the result is the same.
    }
    static const std::vector<std::byte> zero_buffer(buffer_bytes);
    while (n > 0) {
        const auto chunk = static_cast<std::size_t>(std::min<std::uint64_t>(n, zero_buffer.size()));
        if (auto w = pwrite_all(fd, zero_buffer.data(), chunk, offset); !w) return w;
        offset += chunk;
        n -= chunk;
    }
    return {};
}

}  // namespace

const std::error_category& category() noexcept {
    static const enum_category<errc> instance{"kaclone.image", describe};
    return instance;
}

std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), category()}; }

result<raw_stats> copy_raw(int in_fd, int out_fd, zero_blocks zeros) {
    struct stat st {};
    if (::fstat(out_fd, &st) != 0) return last_sys_error("stat the output");
    const output_kind kind = S_ISREG(st.st_mode) ? output_kind::file : S_ISBLK(st.st_mode) ? output_kind::device : output_kind::other;
    if (kind == output_kind::file && ::ftruncate(out_fd, 0) != 0) return last_sys_error("truncate the output");
    std::vector<std::byte> buffer(buffer_bytes);
    raw_stats stats;
    for (;;) {
        auto got = read_full(in_fd, buffer.data(), buffer.size(), stats.bytes);
        if (!got) return std::move(got).error();
        if (*got == 0) break;
        // Runs of data blocks and of zero blocks, each handed on as one write (or one skip).
        std::size_t run_start = 0;
        bool run_zero = false;
        for (std::size_t at = 0;;) {
            const std::size_t n = at < *got ? std::min(block_bytes, *got - at) : 0;
            const bool zero = n > 0 && zeros != zero_blocks::write && all_zero(buffer.data() + at, n);
            if (at != run_start && (n == 0 || zero != run_zero)) {
                const std::uint64_t offset = stats.bytes + run_start;
                const std::size_t run_bytes = at - run_start;
                auto put = run_zero ? put_zeros(out_fd, kind, zeros, offset, run_bytes)
                                    : pwrite_all(out_fd, buffer.data() + run_start, run_bytes, offset);
                if (!put) return std::move(put).error();
                if (run_zero) stats.zero_blocks += (run_bytes + block_bytes - 1) / block_bytes;
                run_start = at;
            }
            if (n == 0) break;
            run_zero = zero;
            at += n;
        }
        stats.bytes += *got;
        if (*got < buffer.size()) break;
    }
    // A file that ends in a hole gets its size from here.
    if (kind == output_kind::file && ::ftruncate(out_fd, static_cast<off_t>(stats.bytes)) != 0)
        return last_sys_error("set the output's size");
    return stats;
}

result<mbr_boot_code> read_mbr(int drive_fd) {
    mbr_boot_code code{};
    std::size_t got = 0;
    while (got < code.size()) {
        const ssize_t r = ::pread(drive_fd, code.data() + got, code.size() - got, static_cast<off_t>(got));
        if (r == 0) return error{make_error_code(errc::bad_mbr_size), "the drive has only " + std::to_string(got) + " bytes"};
        if (r < 0) {
            if (errno == EINTR) continue;
            return last_sys_error("read boot code");
        }
        got += static_cast<std::size_t>(r);
    }
    return code;
}

result<mbr_boot_code> read_mbr_file(const std::filesystem::path& path) {
    auto fd = open_fd(path, O_RDONLY);
    if (!fd) return std::move(fd).error();
    struct stat st {};
    if (::fstat(fd->get(), &st) != 0) return last_sys_error("stat " + path.string());
    if (!S_ISREG(st.st_mode) || static_cast<std::uint64_t>(st.st_size) != mbr_boot_code_bytes)
        return error{make_error_code(errc::bad_mbr_size), path.string() + " is " + std::to_string(st.st_size) + " bytes"};
    auto code = read_mbr(fd->get());
    if (!code) return error{code.error().code, path.string() + ": " + code.error().where};
    return code;
}

result<void> write_mbr(int drive_fd, std::span<const std::byte> boot_code) {
    if (boot_code.size() != mbr_boot_code_bytes)
        return error{make_error_code(errc::bad_mbr_size), std::to_string(boot_code.size()) + " bytes"};
    if (auto w = pwrite_all(drive_fd, boot_code.data(), boot_code.size(), 0); !w) return w;
    if (::fsync(drive_fd) != 0 && errno != EINVAL) return last_sys_error("sync boot code");
    return {};
}

}  // namespace kaclone::image
