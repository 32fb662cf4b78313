// The bundle container: its writer, its reader (read_all, pump by splice or by read/write,
// skip, drain) and its error category (see kaclone/bundle.hpp for the format).
#include <kaclone/bundle.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <kaclone/error_category.hpp>

namespace kaclone::image {
namespace {

const char* describe(bundle_errc e) noexcept {
    switch (e) {
        case bundle_errc::not_a_bundle: return "not a kaclone bundle (no KCBUNDLE magic)";
        case bundle_errc::other_version: return "bundle of another version";
        case bundle_errc::bad_record: return "bundle record too long or of an unexpected stream";
        case bundle_errc::truncated: return "bundle ends early";
        case bundle_errc::too_large: return "bundle stream longer than allowed";
    }
    return "unknown bundle error";
}

constexpr std::array<char, 8> magic = {'K', 'C', 'B', 'U', 'N', 'D', 'L', 'E'};

// Little-endian on every host: the bundle crosses machines.
void put_u32(std::byte* p, std::uint32_t v) noexcept {
    for (int i = 0; i < 4; ++i) p[i] = static_cast<std::byte>(v >> (8 * i));
}
std::uint32_t get_u32(const std::byte* p) noexcept {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= std::to_integer<std::uint32_t>(p[i]) << (8 * i);
    return v;
}

std::string at(std::uint64_t offset) { return "bundle offset " + std::to_string(offset) + ": "; }
std::string stream(std::uint32_t id) { return "stream " + std::to_string(id); }

// Waits until `fd` is ready for `events`. Only reached with a non-blocking descriptor (EAGAIN);
// a poll error shows up again in the read or write that follows, so it is not reported here.
void wait_for(int fd, short events) noexcept {
    pollfd p{fd, events, 0};
    while (::poll(&p, 1, -1) < 0 && errno == EINTR) {
    }
}

// One read(2) that retries EINTR and waits out EAGAIN: > 0 bytes, 0 at EOF, -1 with errno.
ssize_t read_once(int fd, void* data, std::size_t n) noexcept {
    for (;;) {
        const ssize_t r = ::read(fd, data, n);
        if (r >= 0) return r;
        if (errno == EINTR) continue;
        if (errno != EAGAIN) return -1;
        wait_for(fd, POLLIN);
    }
}

// Writes all of `iov[0..count)` (changing the iovecs), retrying short writes and EINTR and
// waiting out EAGAIN; `written` grows by each byte written, also when it fails. 0 or an errno.
int write_all(int fd, iovec* iov, int count, std::uint64_t& written) noexcept {
    while (count > 0 && iov->iov_len == 0) ++iov, --count;
    while (count > 0) {
        const ssize_t w = ::writev(fd, iov, count);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN) return errno;
            wait_for(fd, POLLOUT);
            continue;
        }
        written += static_cast<std::uint64_t>(w);
        auto left = static_cast<std::size_t>(w);
        while (count > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            ++iov, --count;
        }
        if (count > 0) {
            iov->iov_base = static_cast<char*>(iov->iov_base) + left;
            iov->iov_len -= left;
        }
    }
    return 0;
}

bool is_pipe(int fd) noexcept {
    struct stat st {};
    return ::fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode);
}

}  // namespace

const std::error_category& bundle_category() noexcept {
    static const enum_category<bundle_errc> instance{"kaclone.bundle", describe};
    return instance;
}

std::error_code make_error_code(bundle_errc e) noexcept { return {static_cast<int>(e), bundle_category()}; }

// ---- writer ----

bundle_writer::bundle_writer(int out_fd) noexcept : out_(out_fd) {}

result<void> bundle_writer::start() {
    std::array<std::byte, bundle_header_bytes> header{};
    std::memcpy(header.data(), magic.data(), magic.size());
    put_u32(header.data() + 8, bundle_version);
    put_u32(header.data() + 12, 0);
    iovec iov{header.data(), header.size()};
    if (const int e = write_all(out_, &iov, 1, written_)) return sys_error(e, at(written_) + "header: write");
    return {};
}

result<void> bundle_writer::write_record(std::uint32_t id, std::span<const std::byte> payload) {
    KACLONE_ASSERT(payload.size() <= bundle_max_record_bytes);
    std::array<std::byte, bundle_record_header_bytes> header{};
    put_u32(header.data(), id);
    put_u32(header.data() + 4, static_cast<std::uint32_t>(payload.size()));
    // One writev per record: header and payload reach a pipe together, without a copy.
    std::array<iovec, 2> iov{iovec{header.data(), header.size()},
                             iovec{const_cast<std::byte*>(payload.data()), payload.size()}};
    if (const int e = write_all(out_, iov.data(), payload.empty() ? 1 : 2, written_))
        return sys_error(e, at(written_) + stream(id) + ": write");
    return {};
}

result<void> bundle_writer::put(std::uint32_t id, std::span<const std::byte> bytes) {
    while (!bytes.empty()) {
        const std::size_t n = std::min<std::size_t>(bytes.size(), bundle_max_record_bytes);
        if (auto w = write_record(id, bytes.first(n)); !w) return w;
        bytes = bytes.subspan(n);
    }
    return {};
}

result<std::uint64_t> bundle_writer::copy(std::uint32_t id, int in_fd) {
    buffer_.resize(bundle_max_record_bytes);
    std::uint64_t copied = 0;
    for (bool eof = false; !eof;) {
        // Fill a whole record when the input allows: fewer, larger records for the same bytes.
        std::size_t got = 0;
        while (got < buffer_.size()) {
            const ssize_t r = read_once(in_fd, buffer_.data() + got, buffer_.size() - got);
            if (r < 0) return last_sys_error(at(written_) + stream(id) + ": read input at byte " + std::to_string(copied + got));
            if (r == 0) {
                eof = true;
                break;
            }
            got += static_cast<std::size_t>(r);
        }
        if (got == 0) break;
        if (auto w = write_record(id, std::span(buffer_).first(got)); !w) return std::move(w).error();
        copied += got;
    }
    return copied;
}

result<void> bundle_writer::end(std::uint32_t id) { return write_record(id, {}); }

// ---- reader ----
//
// State: before_start -> (start) between_streams; between_streams -> (a data record of the
// next stream) in_stream; in_stream -> (its end record) between_streams with next_id_ + 1.
// Any error that leaves the input's position unknown sets broken_, which every later call
// returns. A failed write in pump leaves the state as it is: inside the stream, in step.

bundle_reader::bundle_reader(int in_fd) noexcept : in_(in_fd) {}

error bundle_reader::fail(error e) {
    broken_ = e;
    return e;
}

std::vector<std::byte>& bundle_reader::buffer() {
    if (buffer_.empty()) buffer_.resize(bundle_max_record_bytes);
    return buffer_;
}

result<void> bundle_reader::start() {
    KACLONE_ASSERT(position_ == position::before_start);
    if (broken_) return *broken_;
    std::array<std::byte, bundle_header_bytes> header{};
    std::size_t got = 0;
    while (got < header.size()) {
        const ssize_t r = read_once(in_, header.data() + got, header.size() - got);
        if (r < 0) return fail(last_sys_error(at(offset_) + "header: read"));
        if (r == 0) break;
        got += static_cast<std::size_t>(r);
        offset_ += static_cast<std::uint64_t>(r);
    }
    // What is there of the magic decides first: a short file that is not a bundle is not_a_bundle.
    if (std::memcmp(header.data(), magic.data(), std::min(got, magic.size())) != 0)
        return fail({make_error_code(bundle_errc::not_a_bundle), at(0) + "magic is not KCBUNDLE"});
    if (got < header.size())
        return fail({make_error_code(bundle_errc::truncated), at(offset_) + "EOF inside the bundle header"});
    if (const std::uint32_t v = get_u32(header.data() + 8); v != bundle_version)
        return fail({make_error_code(bundle_errc::other_version), at(8) + "version " + std::to_string(v)});
    position_ = position::between_streams;
    return {};
}

result<void> bundle_reader::check_stream(std::uint32_t id) const {
    if (broken_) return *broken_;
    KACLONE_ASSERT(position_ != position::before_start);
    if (id != next_id_)
        return error{make_error_code(bundle_errc::bad_record),
                     at(offset_) + stream(id) + " requested, " + stream(next_id_) + " is next"};
    return {};
}

result<std::size_t> bundle_reader::next_chunk(std::uint32_t id) {
    if (position_ == position::in_stream && record_left_ > 0) return std::size_t{record_left_};
    const std::uint64_t header_at = offset_;
    std::array<std::byte, bundle_record_header_bytes> header{};
    std::size_t got = 0;
    while (got < header.size()) {
        const ssize_t r = read_once(in_, header.data() + got, header.size() - got);
        if (r < 0) return fail(last_sys_error(at(offset_) + stream(id) + ": read"));
        if (r == 0) break;
        got += static_cast<std::size_t>(r);
        offset_ += static_cast<std::uint64_t>(r);
    }
    if (got == 0) return fail({make_error_code(bundle_errc::truncated), at(offset_) + stream(id) + ", EOF before its end record"});
    if (got < header.size())
        return fail({make_error_code(bundle_errc::truncated), at(offset_) + stream(id) + ", EOF inside a record header"});
    const std::uint32_t record_id = get_u32(header.data());
    const std::uint32_t length = get_u32(header.data() + 4);
    if (record_id != id)
        return fail({make_error_code(bundle_errc::bad_record), at(header_at) + stream(id) + " expected, record of " + stream(record_id)});
    if (length > bundle_max_record_bytes)
        return fail({make_error_code(bundle_errc::bad_record),
                     at(header_at) + stream(id) + ", record of " + std::to_string(length) + " bytes"});
    if (length == 0) {
        position_ = position::between_streams;
        ++next_id_;
        stream_bytes_ = 0;
        return std::size_t{0};
    }
    position_ = position::in_stream;
    record_left_ = length;
    return std::size_t{length};
}

result<std::size_t> bundle_reader::consume(std::byte* data, std::size_t n, std::uint32_t id) {
    KACLONE_ASSERT(n > 0 && n <= record_left_);
    const ssize_t r = read_once(in_, data, n);
    if (r < 0) return fail(last_sys_error(at(offset_) + stream(id) + ": read"));
    if (r == 0)
        return fail({make_error_code(bundle_errc::truncated),
                     at(offset_) + stream(id) + ", EOF inside a record, " + std::to_string(record_left_) + " bytes missing"});
    const auto got = static_cast<std::size_t>(r);
    offset_ += got;
    stream_bytes_ += got;
    record_left_ -= static_cast<std::uint32_t>(got);
    return got;
}

result<std::string> bundle_reader::read_all(std::uint32_t id, std::size_t max_bytes) {
    if (auto ok = check_stream(id); !ok) return std::move(ok).error();
    std::string text;
    std::optional<error> too_large;
    for (;;) {
        auto n = next_chunk(id);
        if (!n) return std::move(n).error();
        if (*n == 0) break;
        if (!too_large && *n > max_bytes - text.size()) {
            // Remember the first byte too many; the rest of the stream is read and dropped.
            too_large = error{make_error_code(bundle_errc::too_large),
                              at(offset_ + (max_bytes - text.size())) + stream(id) + " is longer than " +
                                  std::to_string(max_bytes) + " bytes"};
            std::string{}.swap(text);
        }
        if (too_large) {
            auto& scratch = buffer();
            if (auto r = consume(scratch.data(), std::min(*n, scratch.size()), id); !r) return std::move(r).error();
            continue;
        }
        // The rest of the record straight into the string, grown once per record.
        const std::size_t old = text.size();
        text.resize(old + *n);
        for (std::size_t filled = 0; filled < *n;) {
            auto r = consume(reinterpret_cast<std::byte*>(text.data() + old + filled), *n - filled, id);
            if (!r) return std::move(r).error();
            filled += *r;
        }
    }
    if (too_large) return *too_large;
    return text;
}

result<std::uint64_t> bundle_reader::pump(std::uint32_t id, int out_fd) {
    if (auto ok = check_stream(id); !ok) return std::move(ok).error();
    if (is_pipe(in_) && is_pipe(out_fd)) return pump_by_splice(id, out_fd);
    return pump_by_copy(id, out_fd);
}

result<std::uint64_t> bundle_reader::pump_by_splice(std::uint32_t id, int out_fd) {
    std::uint64_t moved = 0;
    for (;;) {
        auto n = next_chunk(id);
        if (!n) return std::move(n).error();
        if (*n == 0) return moved;
        // Pipe to pipe: the kernel moves page references, the payload never enters user space.
        // A short splice (less was in the input pipe, or room in the output) is normal; the loop
        // asks for the rest of the record.
        const ssize_t s = ::splice(in_, nullptr, out_fd, nullptr, *n, SPLICE_F_MOVE);
        if (s > 0) {
            const auto got = static_cast<std::size_t>(s);
            offset_ += got;
            stream_bytes_ += got;
            record_left_ -= static_cast<std::uint32_t>(got);
            moved += got;
            continue;
        }
        if (s == 0)
            return fail({make_error_code(bundle_errc::truncated),
                         at(offset_) + stream(id) + ", EOF inside a record, " + std::to_string(record_left_) + " bytes missing"});
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {
            // A non-blocking end: wait for both sides, then try again.
            wait_for(in_, POLLIN);
            wait_for(out_fd, POLLOUT);
            continue;
        }
        if (errno == EINVAL) {
            // Splice refused for these two (same pipe, O_APPEND, ...): copy the rest instead.
            auto rest = pump_by_copy(id, out_fd);
            if (!rest) return rest;
            return moved + *rest;
        }
        // A pipe has no read errors besides EINTR and EAGAIN: this is the output (EPIPE).
        // Nothing of this splice moved, so the reader is still at the first byte not handed on.
        return sys_error(errno, at(offset_) + stream(id) + " at byte " + std::to_string(stream_bytes_) + ": write output");
    }
}

result<std::uint64_t> bundle_reader::pump_by_copy(std::uint32_t id, int out_fd) {
    auto& chunk = buffer();
    std::uint64_t moved = 0;
    for (;;) {
        auto n = next_chunk(id);
        if (!n) return std::move(n).error();
        if (*n == 0) return moved;
        auto got = consume(chunk.data(), std::min(*n, chunk.size()), id);
        if (!got) return std::move(got).error();
        std::uint64_t written = 0;
        iovec iov{chunk.data(), *got};
        if (const int e = write_all(out_fd, &iov, 1, written)) {
            // The chunk is consumed from the input already (the reader stays in step); the error
            // names the first byte that was not handed on, as the splice path does.
            const std::uint64_t lost = *got - written;
            return sys_error(e, at(offset_ - lost) + stream(id) + " at byte " + std::to_string(stream_bytes_ - lost) +
                                    ": write output");
        }
        moved += *got;
    }
}

result<std::uint64_t> bundle_reader::skip(std::uint32_t id) {
    if (auto ok = check_stream(id); !ok) return std::move(ok).error();
    auto& scratch = buffer();
    std::uint64_t dropped = 0;
    for (;;) {
        auto n = next_chunk(id);
        if (!n) return std::move(n).error();
        if (*n == 0) return dropped;
        auto got = consume(scratch.data(), std::min(*n, scratch.size()), id);
        if (!got) return std::move(got).error();
        dropped += *got;
    }
}

void bundle_reader::drain() noexcept {
    // A local buffer: drain must work without allocating (it runs on error paths).
    std::array<std::byte, 64 << 10> scratch;
    for (;;) {
        const ssize_t r = read_once(in_, scratch.data(), scratch.size());
        if (r <= 0) return;
        offset_ += static_cast<std::uint64_t>(r);
    }
}

}  // namespace kaclone::image
