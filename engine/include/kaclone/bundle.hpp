// The bundle: the container that carries a whole-machine clone's several streams (manifest,
// tar trees, raw partitions, boot code) inside the one byte stream a kaclone session relays.
//
// Format (all integers little-endian):
//
//     bundle header, 16 bytes:  8 bytes magic "KCBUNDLE", u32 version = 1, u32 reserved = 0
//     then records:             u32 stream id, u32 payload length, then the payload
//
// A payload is at most 1 MiB (bundle_max_record_bytes = 1 << 20). A record with length 0 ends
// stream `id`. Streams follow one after another in id order: stream 0 (the manifest text)
// first, then 1, 2, ... Each stream is zero or more data records, then its end record. After
// the end record of the last stream, the byte stream ends (EOF).
//
// Record boundaries carry no meaning: a stream's content is its payloads concatenated. The
// relay never looks inside; only the server (writer) and each node's sink (reader) do.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <type_traits>
#include <vector>

#include <kaclone/result.hpp>

namespace kaclone::image {

// Why a bundle is refused. Values are only ever appended.
enum class bundle_errc {
    not_a_bundle = 1,  // the first 8 bytes are not "KCBUNDLE"
    other_version,     // the header's version is not 1
    bad_record,        // a record longer than 1 MiB, or of another stream than the one expected
    truncated,         // EOF inside the header, inside a record, or before the stream's end record
    too_large,         // read_all: the stream is longer than the caller's bound
};

const std::error_category& bundle_category() noexcept;
std::error_code make_error_code(bundle_errc e) noexcept;

inline constexpr std::size_t bundle_header_bytes = 16;
inline constexpr std::size_t bundle_record_header_bytes = 8;
inline constexpr std::uint32_t bundle_version = 1;
inline constexpr std::uint32_t bundle_max_record_bytes = 1u << 20;

// Writes a bundle to `out_fd` (a pipe, socket or file; borrowed, never closed; blocking writes,
// a non-blocking descriptor is waited on with poll). The caller calls start(), then for each
// stream in id order put()/copy() any number of times and end(). Writes are plain write(2)s:
// when the reader is gone the error is EPIPE, and the caller must ignore SIGPIPE so that it
// does not kill the process. Errors name the bundle offset and the stream:
// "bundle offset 1048600: stream 3: write".
class bundle_writer {
public:
    explicit bundle_writer(int out_fd) noexcept;

    // Writes the 16-byte bundle header.
    result<void> start();
    // Writes `bytes` as data records of stream `id` (split into records of at most 1 MiB, each
    // written with one writev). An empty span writes nothing (it would be an end record).
    result<void> put(std::uint32_t id, std::span<const std::byte> bytes);
    // Reads `in_fd` (borrowed) to its end and writes what it reads as data records of stream
    // `id`: up to 1 MiB is read, then record header and payload go out with one writev. Returns
    // the payload bytes copied. A read error names "stream N: read input at byte M".
    result<std::uint64_t> copy(std::uint32_t id, int in_fd);
    // Writes the end record of stream `id`.
    result<void> end(std::uint32_t id);

    // Bytes written to `out_fd` so far (headers included).
    std::uint64_t bytes_written() const noexcept { return written_; }

private:
    result<void> write_record(std::uint32_t id, std::span<const std::byte> payload);

    int out_;
    std::uint64_t written_ = 0;
    std::vector<std::byte> buffer_;  // copy()'s read buffer, 1 MiB once used
};

// Reads a bundle from `in_fd` (a pipe, socket or file; borrowed, never closed; blocking or
// not). The caller calls start(), then takes the streams in order 0, 1, 2, ... each with
// read_all(), pump() or skip(); asking for another stream than the next one, or a record that
// belongs to another stream, is bundle_errc::bad_record. Errors' `where` is
// "bundle offset N: ..." with N the offset in the input of the place that is wrong (a record's
// header, the first byte past a bound) or where the input ended; e.g.
// "bundle offset 1048600: stream 3 expected, record of stream 5".
//
// After bad_record, truncated, not_a_bundle, other_version or a read error the reader is out of
// step with the input: every later call returns that same error (drain() still reads to EOF).
// It is still in step after too_large, after a failed write in pump(), and after bad_record for
// a stream asked for out of order ("bundle offset 16: stream 1 requested, stream 0 is next"),
// which reads nothing.
class bundle_reader {
public:
    explicit bundle_reader(int in_fd) noexcept;

    // Reads and checks the 16-byte bundle header (the reserved field is not checked).
    // Errors: not_a_bundle ("bundle offset 0: magic is not KCBUNDLE"), other_version
    // ("bundle offset 8: version 2"), truncated ("bundle offset 5: EOF inside the bundle header").
    result<void> start();

    // Reads all of stream `id` (the next stream, or the rest of the current one) up to its end
    // record into a string. More than `max_bytes`: too_large ("bundle offset N: stream 2 is
    // longer than 100 bytes", N the offset of its first byte too many); the rest of the stream
    // is still read and dropped, so the reader stays in step and the next stream can be read.
    result<std::string> read_all(std::uint32_t id, std::size_t max_bytes);

    // Moves stream `id` (the next stream, or the rest of the current one) into `out_fd`
    // (borrowed) up to its end record; returns the payload bytes moved by this call. When
    // `in_fd` and `out_fd` are both pipes the bytes go by splice(2), never through user space;
    // otherwise by read and write. When writing to `out_fd` fails (EPIPE: the consumer died)
    // the system error is returned with where "bundle offset N: stream 3 at byte M: write
    // output" (M: bytes of the stream handed on before) and the reader is left inside that
    // stream: skip(id) consumes its rest and keeps the reader in step.
    result<std::uint64_t> pump(std::uint32_t id, int out_fd);

    // Reads and drops stream `id` (the next stream, or the rest of the current one after a
    // failed pump or read_all) up to its end record; returns the payload bytes dropped.
    result<std::uint64_t> skip(std::uint32_t id);

    // Reads and drops everything up to EOF (or a read error), so that a writer upstream is never
    // left blocked. The reader is done afterwards.
    void drain() noexcept;

    // Bytes consumed from `in_fd` so far.
    std::uint64_t offset() const noexcept { return offset_; }

private:
    // Where the reader is: between streams (the next one is `next_id_`), or inside stream
    // `next_id_` with `record_left_` payload bytes of the current record not yet consumed.
    enum class position { before_start, between_streams, in_stream };

    // What the next chunk of stream `id` is: `n` payload bytes readable now (at most
    // record_left_), or 0 when the stream's end record has just been consumed.
    result<std::size_t> next_chunk(std::uint32_t id);
    // Whether stream `id` may be read now (the reader is in step and `id` is the next stream).
    result<void> check_stream(std::uint32_t id) const;
    // One read of up to `n` (<= record_left_) payload bytes of stream `id` into `data`.
    result<std::size_t> consume(std::byte* data, std::size_t n, std::uint32_t id);
    result<std::uint64_t> pump_by_splice(std::uint32_t id, int out_fd);
    result<std::uint64_t> pump_by_copy(std::uint32_t id, int out_fd);
    // Marks the reader as out of step with the input and returns `e`.
    error fail(error e);
    std::vector<std::byte>& buffer();

    int in_;
    position position_ = position::before_start;
    std::uint32_t next_id_ = 0;
    std::uint32_t record_left_ = 0;
    std::uint64_t stream_bytes_ = 0;  // payload bytes of the current stream consumed so far
    std::uint64_t offset_ = 0;
    std::optional<error> broken_;     // set once the reader is out of step with the input
    std::vector<std::byte> buffer_;   // for read and write paths, 1 MiB once used
};

}  // namespace kaclone::image

template <>
struct std::is_error_code_enum<kaclone::image::bundle_errc> : std::true_type {};
