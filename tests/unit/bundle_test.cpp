// The bundle container (kaclone/bundle.hpp): its byte layout, round trips through pipes and
// files by read_all and by pump (splice and read/write), refused inputs with their exact place,
// and how the reader keeps in step after too_large and a dead consumer.
#include <kaclone/bundle.hpp>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <kaclone/unique_fd.hpp>

#include <gtest/gtest.h>

namespace kaclone::image {
namespace {

constexpr std::size_t mib = 1 << 20;

// The tests write into pipes whose reader may be gone: EPIPE, not death by SIGPIPE.
void ignore_sigpipe() { std::signal(SIGPIPE, SIG_IGN); }

std::span<const std::byte> bytes_of(const std::string& s) { return std::as_bytes(std::span{s.data(), s.size()}); }

std::string le32(std::uint32_t v) {
    std::string out;
    for (int i = 0; i < 4; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
    return out;
}
std::string bundle_header(std::uint32_t version = 1) { return "KCBUNDLE" + le32(version) + le32(0); }
std::string record_header(std::uint32_t id, std::uint32_t length) { return le32(id) + le32(length); }
std::string record(std::uint32_t id, const std::string& payload) {
    return record_header(id, static_cast<std::uint32_t>(payload.size())) + payload;
}

std::string random_bytes(std::size_t n) {
    const unsigned seed = std::random_device{}();
    std::printf("random_bytes(%zu): seed %u\n", n, seed);
    std::mt19937 gen{seed};
    std::string out(n, '\0');
    for (auto& c : out) c = static_cast<char>(gen() & 0xff);
    return out;
}

std::pair<unique_fd, unique_fd> make_pipe() {
    int fds[2] = {-1, -1};
    EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0) << std::strerror(errno);
    return {unique_fd{fds[0]}, unique_fd{fds[1]}};
}

// A regular file (a memfd) holding `content`, positioned at its start.
unique_fd file_with(const std::string& content) {
    unique_fd fd{::memfd_create("bundle", MFD_CLOEXEC)};
    EXPECT_TRUE(fd) << std::strerror(errno);
    EXPECT_EQ(::write(fd.get(), content.data(), content.size()), static_cast<ssize_t>(content.size()));
    EXPECT_EQ(::lseek(fd.get(), 0, SEEK_SET), 0);
    return fd;
}

// An unlinked temp file in the temp directory (a real filesystem, unlike a memfd).
unique_fd temp_file() {
    std::string pattern = (std::filesystem::temp_directory_path() / "kaclone-bundle.XXXXXX").string();
    unique_fd fd{::mkstemp(pattern.data())};
    EXPECT_TRUE(fd) << std::strerror(errno);
    ::unlink(pattern.c_str());
    return fd;
}

// All of a file's content from offset 0.
std::string file_content(int fd) {
    std::string out;
    char buf[64 << 10];
    for (off_t at = 0;;) {
        const ssize_t r = ::pread(fd, buf, sizeof buf, at);
        if (r <= 0) break;
        out.append(buf, static_cast<std::size_t>(r));
        at += r;
    }
    return out;
}

// Bytes produced on a thread into a pipe: the reader reads fd(). The write end is closed when
// `produce` returns; the destructor closes the read end first, so a producer blocked on a full
// pipe (after a failed assertion) gets EPIPE instead of hanging the join.
class producer {
public:
    explicit producer(std::function<result<void>(int)> produce) {
        auto [r, w] = make_pipe();
        read_ = std::move(r);
        write_ = std::move(w);
        thread_ = std::thread([this, produce = std::move(produce)] {
            result_ = produce(write_.get());
            write_.reset();
        });
    }
    ~producer() {
        read_.reset();
        if (thread_.joinable()) thread_.join();
    }
    int fd() const { return read_.get(); }
    // Waits for the producer; its result.
    result<void> finish() {
        thread_.join();
        return result_;
    }

private:
    unique_fd read_, write_;
    result<void> result_;
    std::thread thread_;
};

// Writes `bytes` as they are, in pieces of 1, 2, ... 13 bytes (many short reads on the other end).
result<void> dribble(int fd, const std::string& bytes) {
    std::size_t at = 0;
    for (std::size_t piece = 1; at < bytes.size(); piece = piece % 13 + 1) {
        const std::size_t n = std::min(piece, bytes.size() - at);
        const ssize_t w = ::write(fd, bytes.data() + at, n);
        if (w < 0) return last_sys_error("dribble");
        at += static_cast<std::size_t>(w);
    }
    return {};
}

// Writes `bytes` with as few writes as the pipe allows.
result<void> write_whole(int fd, const std::string& bytes) {
    for (std::size_t at = 0; at < bytes.size();) {
        const ssize_t w = ::write(fd, bytes.data() + at, bytes.size() - at);
        if (w < 0) return last_sys_error("write");
        at += static_cast<std::size_t>(w);
    }
    return {};
}

// A pipe whose read end a thread reads to EOF: the pump's output.
class pipe_sink {
public:
    // `stop_after`: the thread closes the read end once it has read that many bytes.
    explicit pipe_sink(std::size_t stop_after = SIZE_MAX) {
        auto [r, w] = make_pipe();
        read_ = std::move(r);
        write_ = std::move(w);
        thread_ = std::thread([this, stop_after] {
            char buf[64 << 10];
            for (;;) {
                const ssize_t n = ::read(read_.get(), buf, std::min(sizeof buf, stop_after - text_.size()));
                if (n <= 0) break;
                text_.append(buf, static_cast<std::size_t>(n));
                if (text_.size() == stop_after) break;
            }
            read_.reset();
        });
    }
    ~pipe_sink() { finish(); }
    int fd() const { return write_.get(); }
    // Closes the write end and returns what the thread read.
    const std::string& finish() {
        write_.reset();
        if (thread_.joinable()) thread_.join();
        return text_;
    }

private:
    unique_fd read_, write_;
    std::string text_;
    std::thread thread_;
};

// The streams of a small clone: a manifest, an empty stream, 5 bytes, 3 MiB + 7 random bytes
// (four records, the last one 7 bytes), the big one sent by copy() from a file.
struct sample {
    std::string manifest = "kaclone-manifest 1\nstream 1 tree mount=/\nstream 2 boot-code bytes=5\nend\n";
    std::string five = "hello";
    std::string big = random_bytes(3 * mib + 7);

    result<void> write(int fd) const {
        bundle_writer w{fd};
        if (auto r = w.start(); !r) return r;
        if (auto r = w.put(0, bytes_of(manifest)); !r) return r;
        if (auto r = w.end(0); !r) return r;
        if (auto r = w.end(1); !r) return r;
        if (auto r = w.put(2, bytes_of(five)); !r) return r;
        if (auto r = w.end(2); !r) return r;
        unique_fd in = file_with(big);
        auto copied = w.copy(3, in.get());
        if (!copied) return std::move(copied).error();
        if (*copied != big.size()) return error{std::make_error_code(std::errc::io_error), "copy: short"};
        if (auto r = w.end(3); !r) return r;
        if (w.bytes_written() != total_bytes()) return error{std::make_error_code(std::errc::io_error), "bytes_written"};
        return {};
    }
    // The bundle's size: header, then each stream's records and end record.
    std::uint64_t total_bytes() const { return 16 + (8 + manifest.size() + 8) + 8 + (8 + 5 + 8) + (4 * 8 + big.size() + 8); }
};

// ---- writer ----

TEST(BundleWriter, WritesTheDocumentedLayout) {
    unique_fd out{::memfd_create("bundle", MFD_CLOEXEC)};
    bundle_writer w{out.get()};

    ASSERT_TRUE(w.start());
    ASSERT_TRUE(w.put(0, bytes_of("abc")));
    ASSERT_TRUE(w.end(0));
    ASSERT_TRUE(w.put(1, {}));
    ASSERT_TRUE(w.end(1));

    const std::string expected = std::string("KCBUNDLE\x01\0\0\0\0\0\0\0", 16) + std::string("\0\0\0\0\x03\0\0\0abc", 11) +
                                 std::string("\0\0\0\0\0\0\0\0", 8) + std::string("\x01\0\0\0\0\0\0\0", 8);
    EXPECT_EQ(file_content(out.get()), expected);
    EXPECT_EQ(w.bytes_written(), expected.size());
}

TEST(BundleWriter, SplitsPutIntoRecordsOfOneMiB) {
    unique_fd out{::memfd_create("bundle", MFD_CLOEXEC)};
    bundle_writer w{out.get()};
    const std::string payload(2 * mib + 1, 'x');

    ASSERT_TRUE(w.start());
    ASSERT_TRUE(w.put(7, bytes_of(payload)));

    const std::string bytes = file_content(out.get());
    ASSERT_EQ(bytes.size(), 16 + 3 * 8 + payload.size());
    EXPECT_EQ(bytes.substr(16, 8), record_header(7, mib));
    EXPECT_EQ(bytes.substr(16 + 8 + mib, 8), record_header(7, mib));
    EXPECT_EQ(bytes.substr(16 + 2 * (8 + mib), 8), record_header(7, 1));
}

TEST(BundleWriter, FailsWithEpipeWhenTheReaderIsGone) {
    ignore_sigpipe();
    auto [r, w] = make_pipe();
    r.reset();
    bundle_writer writer{w.get()};

    auto started = writer.start();

    ASSERT_FALSE(started);
    EXPECT_EQ(started.error().code, std::error_code(EPIPE, std::system_category()));
    EXPECT_EQ(started.error().where, "bundle offset 0: header: write");
}

// ---- round trips ----

TEST(Bundle, RoundTripsThroughReadAll) {
    ignore_sigpipe();
    const sample s;
    producer source{[&](int fd) { return s.write(fd); }};
    bundle_reader reader{source.fd()};

    ASSERT_TRUE(reader.start());
    auto manifest = reader.read_all(0, 4096);
    auto empty = reader.read_all(1, 4096);
    auto five = reader.read_all(2, 4096);
    auto big = reader.read_all(3, 4 * mib);

    ASSERT_TRUE(manifest) << manifest.error().message();
    ASSERT_TRUE(empty) << empty.error().message();
    ASSERT_TRUE(five) << five.error().message();
    ASSERT_TRUE(big) << big.error().message();
    EXPECT_EQ(*manifest, s.manifest);
    EXPECT_EQ(*empty, "");
    EXPECT_EQ(*five, s.five);
    EXPECT_TRUE(*big == s.big);
    EXPECT_EQ(reader.offset(), s.total_bytes());
    auto written = source.finish();
    EXPECT_TRUE(written) << written.error().message();
}

enum class output { pipe, file };

// pump's two paths: into a pipe (splice from the input pipe) and into a file (read/write).
class BundlePump : public ::testing::TestWithParam<output> {
protected:
    void SetUp() override { ignore_sigpipe(); }

    // Pumps stream `id` into a fresh output of the parameter's kind; what arrived there.
    std::string pump_stream(bundle_reader& reader, std::uint32_t id, std::uint64_t expected_bytes) {
        if (GetParam() == output::pipe) {
            pipe_sink sink;
            auto moved = reader.pump(id, sink.fd());
            if (!moved) ADD_FAILURE() << moved.error().message();
            EXPECT_EQ(moved ? *moved : 0, expected_bytes);
            return sink.finish();
        }
        unique_fd file = temp_file();
        auto moved = reader.pump(id, file.get());
        if (!moved) ADD_FAILURE() << moved.error().message();
        EXPECT_EQ(moved ? *moved : 0, expected_bytes);
        return file_content(file.get());
    }
};

TEST_P(BundlePump, RoundTripsEveryStreamExactly) {
    const sample s;
    producer source{[&](int fd) { return s.write(fd); }};
    bundle_reader reader{source.fd()};

    ASSERT_TRUE(reader.start());
    auto manifest = reader.read_all(0, 4096);
    const std::string empty = pump_stream(reader, 1, 0);
    const std::string five = pump_stream(reader, 2, 5);
    const std::string big = pump_stream(reader, 3, s.big.size());

    ASSERT_TRUE(manifest) << manifest.error().message();
    EXPECT_EQ(*manifest, s.manifest);
    EXPECT_EQ(empty, "");
    EXPECT_EQ(five, s.five);
    EXPECT_EQ(big.size(), s.big.size());
    EXPECT_TRUE(big == s.big);
    EXPECT_EQ(reader.offset(), s.total_bytes());
    EXPECT_TRUE(source.finish());
}

TEST_P(BundlePump, HandlesShortReadsInsideHeadersAndRecords) {
    const std::string payload = random_bytes(300000);
    const std::string bytes = bundle_header() + record(0, "m") + record(0, "") + record(1, payload.substr(0, 123457)) +
                              record(1, payload.substr(123457)) + record(1, "");
    producer source{[&](int fd) { return dribble(fd, bytes); }};
    bundle_reader reader{source.fd()};

    ASSERT_TRUE(reader.start());
    auto manifest = reader.read_all(0, 10);
    const std::string pumped = pump_stream(reader, 1, payload.size());

    ASSERT_TRUE(manifest) << manifest.error().message();
    EXPECT_EQ(*manifest, "m");
    EXPECT_TRUE(pumped == payload);
    EXPECT_EQ(reader.offset(), bytes.size());
}

INSTANTIATE_TEST_SUITE_P(BundleOutputs, BundlePump, ::testing::Values(output::pipe, output::file),
                         [](const auto& param_info) { return param_info.param == output::pipe ? "SpliceIntoPipe" : "WriteIntoFile"; });

// ---- refused input ----

struct bad_case {
    const char* name;
    std::string bytes;
    bundle_errc code;
    const char* where;
};

class BundleRefuses : public ::testing::TestWithParam<bad_case> {
protected:
    void SetUp() override { ignore_sigpipe(); }
};

// Reads streams 0, 1, 2, ... with read_all until the first error.
TEST_P(BundleRefuses, WithTheErrorAndItsPlace) {
    producer source{[&](int fd) { return dribble(fd, GetParam().bytes); }};
    bundle_reader reader{source.fd()};

    result<std::string> failed = std::string{};
    if (auto started = reader.start(); !started) failed = std::move(started).error();
    for (std::uint32_t id = 0; failed && id < 4; ++id) failed = reader.read_all(id, 4096);

    ASSERT_FALSE(failed);
    EXPECT_EQ(failed.error().code, GetParam().code);
    EXPECT_EQ(failed.error().where, GetParam().where);
}

INSTANTIATE_TEST_SUITE_P(
    BundleCases, BundleRefuses,
    ::testing::Values(
        bad_case{"WrongMagic", "KCBUNDLX" + le32(1) + le32(0), bundle_errc::not_a_bundle, "bundle offset 0: magic is not KCBUNDLE"},
        bad_case{"ShortNonBundle", "tar", bundle_errc::not_a_bundle, "bundle offset 0: magic is not KCBUNDLE"},
        bad_case{"OtherVersion", bundle_header(2) + record(0, ""), bundle_errc::other_version, "bundle offset 8: version 2"},
        bad_case{"Empty", "", bundle_errc::truncated, "bundle offset 0: EOF inside the bundle header"},
        bad_case{"InsideHeader", "KCBUN", bundle_errc::truncated, "bundle offset 5: EOF inside the bundle header"},
        bad_case{"InsideVersion", "KCBUNDLE\x01", bundle_errc::truncated, "bundle offset 9: EOF inside the bundle header"},
        bad_case{"RecordOverOneMiB", bundle_header() + record_header(0, mib + 1), bundle_errc::bad_record,
                 "bundle offset 16: stream 0, record of 1048577 bytes"},
        bad_case{"WrongStreamId", bundle_header() + record(0, "m") + record(0, "") + record(5, "x"), bundle_errc::bad_record,
                 "bundle offset 33: stream 1 expected, record of stream 5"},
        bad_case{"StreamRepeated", bundle_header() + record(0, "") + record(0, "again"), bundle_errc::bad_record,
                 "bundle offset 24: stream 1 expected, record of stream 0"},
        bad_case{"InsideRecordHeader", bundle_header() + std::string(3, '\0'), bundle_errc::truncated,
                 "bundle offset 19: stream 0, EOF inside a record header"},
        bad_case{"InsidePayload", bundle_header() + record_header(0, 10) + "abcd", bundle_errc::truncated,
                 "bundle offset 28: stream 0, EOF inside a record, 6 bytes missing"},
        bad_case{"BeforeEndRecord", bundle_header() + record(0, "abc"), bundle_errc::truncated,
                 "bundle offset 27: stream 0, EOF before its end record"},
        bad_case{"BeforeNextStream", bundle_header() + record(0, "m") + record(0, ""), bundle_errc::truncated,
                 "bundle offset 33: stream 1, EOF before its end record"}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

TEST(Bundle, RefusesAStreamOutOfOrderAndStaysInStep) {
    ignore_sigpipe();
    producer source{[&](int fd) { return dribble(fd, bundle_header() + record(0, "m") + record(0, "")); }};
    bundle_reader reader{source.fd()};
    ASSERT_TRUE(reader.start());

    auto early = reader.read_all(1, 10);
    auto manifest = reader.read_all(0, 10);

    ASSERT_FALSE(early);
    EXPECT_EQ(early.error().code, bundle_errc::bad_record);
    EXPECT_EQ(early.error().where, "bundle offset 16: stream 1 requested, stream 0 is next");
    ASSERT_TRUE(manifest) << manifest.error().message();
    EXPECT_EQ(*manifest, "m");
}

TEST(Bundle, RepeatsTheFirstErrorOnceOutOfStep) {
    ignore_sigpipe();
    producer source{[&](int fd) { return dribble(fd, bundle_header() + record(0, "m") + record(0, "") + record(5, "x")); }};
    bundle_reader reader{source.fd()};
    ASSERT_TRUE(reader.start());
    ASSERT_TRUE(reader.read_all(0, 10));

    auto first = reader.read_all(1, 10);
    auto again = reader.skip(1);

    ASSERT_FALSE(first);
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().code, bundle_errc::bad_record);
    EXPECT_EQ(again.error().where, first.error().where);
}

// ---- keeping in step ----

TEST(Bundle, ReadAllTooLargeStillReadsTheNextStream) {
    ignore_sigpipe();
    const std::string big = random_bytes(2 * mib + mib / 2);  // three records
    const std::string bytes = bundle_header() + record(0, "m") + record(0, "") + record(1, big.substr(0, mib)) +
                              record(1, big.substr(mib, mib)) + record(1, big.substr(2 * mib)) + record(1, "") +
                              record(2, "after") + record(2, "");
    producer source{[&](int fd) { return dribble(fd, bytes); }};
    bundle_reader reader{source.fd()};
    ASSERT_TRUE(reader.start());
    ASSERT_TRUE(reader.read_all(0, 10));

    auto too_large = reader.read_all(1, mib + mib / 2);
    auto after = reader.read_all(2, 10);

    ASSERT_FALSE(too_large);
    EXPECT_EQ(too_large.error().code, bundle_errc::too_large);
    // Stream 1's payload starts at 16 + 9 + 8 + 8 = 41; byte 1.5 MiB of it lies in the second
    // record, one more record header (8) further: 41 + 1572864 + 8.
    EXPECT_EQ(too_large.error().where, "bundle offset 1572913: stream 1 is longer than 1572864 bytes");
    ASSERT_TRUE(after) << after.error().message();
    EXPECT_EQ(*after, "after");
    EXPECT_EQ(reader.offset(), bytes.size());
}

TEST(Bundle, ReadAllTooLargeInTheFirstRecordNamesItsFirstByteTooMany) {
    ignore_sigpipe();
    producer source{[&](int fd) { return dribble(fd, bundle_header() + record(0, "0123456789") + record(0, "") + record(1, "")); }};
    bundle_reader reader{source.fd()};
    ASSERT_TRUE(reader.start());

    auto too_large = reader.read_all(0, 4);
    auto next = reader.read_all(1, 4);

    ASSERT_FALSE(too_large);
    EXPECT_EQ(too_large.error().code, bundle_errc::too_large);
    EXPECT_EQ(too_large.error().where, "bundle offset 28: stream 0 is longer than 4 bytes");
    ASSERT_TRUE(next) << next.error().message();
    EXPECT_EQ(*next, "");
}

enum class input { pipe, file };

// A dead consumer, with the bundle coming from a pipe (splice path) or a file (read/write path).
class BundleDeadConsumer : public ::testing::TestWithParam<input> {
protected:
    void SetUp() override { ignore_sigpipe(); }

    // Stream 0 "m", stream 1 `big` (3 MiB + 7: four records), stream 2 "after".
    std::string bundle_bytes() const {
        return bundle_header() + record(0, "m") + record(0, "") + record(1, big_.substr(0, mib)) +
               record(1, big_.substr(mib, mib)) + record(1, big_.substr(2 * mib, mib)) + record(1, big_.substr(3 * mib)) +
               record(1, "") + record(2, "after") + record(2, "");
    }
    // The input: a producer's pipe, or a file.
    int open_input() {
        if (GetParam() == input::file) {
            file_ = file_with(bundle_bytes());
            return file_.get();
        }
        source_.emplace([this](int fd) { return write_whole(fd, bundle_bytes()); });
        return source_->fd();
    }

    const std::string big_ = random_bytes(3 * mib + 7);
    unique_fd file_;
    std::optional<producer> source_;
};

TEST_P(BundleDeadConsumer, PumpFailsThenSkipKeepsTheReaderInStep) {
    bundle_reader reader{open_input()};
    ASSERT_TRUE(reader.start());
    ASSERT_TRUE(reader.read_all(0, 10));
    auto [closed_read, out] = make_pipe();
    closed_read.reset();

    auto pumped = reader.pump(1, out.get());
    auto skipped = reader.skip(1);
    auto after = reader.read_all(2, 10);

    ASSERT_FALSE(pumped);
    EXPECT_EQ(pumped.error().code, std::error_code(EPIPE, std::system_category()));
    EXPECT_EQ(pumped.error().where, "bundle offset 41: stream 1 at byte 0: write output");
    ASSERT_TRUE(skipped) << skipped.error().message();
    ASSERT_TRUE(after) << after.error().message();
    EXPECT_EQ(*after, "after");
    EXPECT_EQ(reader.offset(), bundle_bytes().size());
}

TEST_P(BundleDeadConsumer, PumpFailingMidRecordThenSkipKeepsTheReaderInStep) {
    bundle_reader reader{open_input()};
    ASSERT_TRUE(reader.start());
    ASSERT_TRUE(reader.read_all(0, 10));
    pipe_sink sink{100000};  // reads 100000 bytes, then closes its end

    auto pumped = reader.pump(1, sink.fd());
    const std::string got = sink.finish();
    auto skipped = reader.skip(1);
    auto after = reader.read_all(2, 10);

    ASSERT_FALSE(pumped);
    EXPECT_EQ(pumped.error().code, std::error_code(EPIPE, std::system_category()));
    EXPECT_EQ(pumped.error().where.rfind("bundle offset ", 0), 0u) << pumped.error().where;
    EXPECT_NE(pumped.error().where.find(": stream 1 at byte "), std::string::npos) << pumped.error().where;
    EXPECT_TRUE(got == big_.substr(0, 100000));
    ASSERT_TRUE(skipped) << skipped.error().message();
    ASSERT_TRUE(after) << after.error().message();
    EXPECT_EQ(*after, "after");
    EXPECT_EQ(reader.offset(), bundle_bytes().size());
}

INSTANTIATE_TEST_SUITE_P(BundleInputs, BundleDeadConsumer, ::testing::Values(input::pipe, input::file),
                         [](const auto& param_info) { return param_info.param == input::pipe ? "FromPipe" : "FromFile"; });

TEST(Bundle, DrainReadsALargeInputToItsEnd) {
    ignore_sigpipe();
    const std::string big(9 * mib + 3, 'z');
    std::uint64_t written = 0;
    producer source{[&](int fd) -> result<void> {
        bundle_writer w{fd};
        if (auto r = w.start(); !r) return r;
        if (auto r = w.put(0, bytes_of(std::string("m"))); !r) return r;
        if (auto r = w.end(0); !r) return r;
        if (auto r = w.put(1, bytes_of(big)); !r) return r;
        if (auto r = w.end(1); !r) return r;
        written = w.bytes_written();
        return {};
    }};
    bundle_reader reader{source.fd()};
    ASSERT_TRUE(reader.start());
    ASSERT_TRUE(reader.read_all(0, 10));

    reader.drain();

    auto finished = source.finish();  // would hang (or fail with EPIPE) if drain stopped early
    ASSERT_TRUE(finished) << finished.error().message();
    EXPECT_EQ(reader.offset(), written);
    EXPECT_EQ(written, 16 + 17 + 10 * 8 + big.size() + 8);
}

}  // namespace
}  // namespace kaclone::image
