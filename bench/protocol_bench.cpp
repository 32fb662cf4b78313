// Wire format costs: frame header encode, frame decode + verify (header check and payload
// checksum), the end frame, a control message, and the relay's per-frame work (verify, then
// feed the running stream digest). Figures in bytes/s of the bytes encoded or verified.
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <benchmark/benchmark.h>

#include <kaclone/protocol.hpp>

namespace {

namespace protocol = kaclone::protocol;
using protocol::frame_header_bytes;

constexpr std::string_view where = "stream 0 at offset 0";

std::vector<std::byte> random_payload(std::size_t bytes) {
    std::vector<std::byte> data(bytes);
    std::mt19937_64 rng{42};
    for (auto& b : data) b = static_cast<std::byte>(rng());
    return data;
}

// One data frame as it travels: 40-byte header, then the payload.
std::vector<std::byte> data_frame(std::size_t payload_bytes, std::uint64_t offset) {
    const auto payload = random_payload(payload_bytes);
    std::vector<std::byte> frame(frame_header_bytes + payload_bytes);
    const protocol::frame_header h{protocol::frame_type::data, 0, static_cast<std::uint32_t>(payload_bytes),
                                   offset, protocol::payload_checksum(payload)};
    protocol::encode_frame_header(h, std::span(frame).first<frame_header_bytes>());
    std::copy(payload.begin(), payload.end(), frame.begin() + frame_header_bytes);
    return frame;
}

// The end frame of a stream of `total_bytes` whose digest is `digest`.
std::array<std::byte, frame_header_bytes + protocol::end_payload_bytes> end_frame(
    std::uint64_t total_bytes, const protocol::stream_digest& digest) {
    std::array<std::byte, frame_header_bytes + protocol::end_payload_bytes> frame{};
    const auto payload = std::span(frame).subspan<frame_header_bytes>();
    protocol::encode_end_payload({total_bytes, digest}, payload);
    const protocol::frame_header h{protocol::frame_type::end, 0, protocol::end_payload_bytes, total_bytes,
                                   protocol::payload_checksum(payload)};
    protocol::encode_frame_header(h, std::span(frame).first<frame_header_bytes>());
    return frame;
}

// A tree node's assignment: four children, the largest message of a session.
protocol::assign sample_assign() {
    protocol::assign a{.node = 3, .parent_node = 1, .parent_address = "10.0.0.1", .parent_port = 7118,
                       .children = {}, .stream_bytes = std::uint64_t{64} << 30, .relay_mode = 0};
    for (std::uint32_t i = 0; i < 4; ++i) a.children.push_back({10 + i, "10.0.0." + std::to_string(10 + i)});
    return a;
}

void BM_FrameHeaderEncode(benchmark::State& state) {
    std::array<std::byte, frame_header_bytes> out{};
    protocol::frame_header h{protocol::frame_type::data, 0, protocol::default_frame_payload_bytes, 0,
                             0x0123456789abcdefULL};
    for (auto _ : state) {
        protocol::encode_frame_header(h, out);
        benchmark::DoNotOptimize(out.data());
        benchmark::ClobberMemory();
        h.offset += h.payload_bytes;  // a new header each time, as the server writes them
    }
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(frame_header_bytes));
}
BENCHMARK(BM_FrameHeaderEncode);

void BM_FrameHeaderDecode(benchmark::State& state) {
    const auto frame = data_frame(protocol::default_frame_payload_bytes, 0);
    const auto header = std::span(frame).first<frame_header_bytes>();
    for (auto _ : state) {
        auto h = protocol::decode_frame_header(header, where);
        if (!h) return state.SkipWithError("frame header rejected");
        benchmark::DoNotOptimize(h->checksum);
    }
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(frame_header_bytes));
}
BENCHMARK(BM_FrameHeaderDecode);

// Header check + payload checksum of one frame: what every receiver does before trusting it.
void BM_FrameDecodeVerify(benchmark::State& state) {
    const auto frame = data_frame(static_cast<std::size_t>(state.range(0)), 0);
    const auto bytes = std::span<const std::byte>(frame);
    for (auto _ : state) {
        auto h = protocol::decode_frame_header(bytes.first<frame_header_bytes>(), where);
        if (!h) return state.SkipWithError("frame header rejected");
        const auto payload = bytes.subspan(frame_header_bytes, h->payload_bytes);
        if (protocol::payload_checksum(payload) != h->checksum) return state.SkipWithError("bad checksum");
    }
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(frame.size()));
}
BENCHMARK(BM_FrameDecodeVerify)->RangeMultiplier(4)->Range(4 << 10, 1 << 20);

// The relay's per-frame work (relay.cpp, parse()): decode and check the header and its offset,
// verify the payload checksum, add the frame to the running stream digest.
void BM_RelayFrameVerifyDigest(benchmark::State& state) {
    const auto frame = data_frame(static_cast<std::size_t>(state.range(0)), 0);
    const auto bytes = std::span<const std::byte>(frame);
    protocol::digest_state digest;
    for (auto _ : state) {
        auto h = protocol::decode_frame_header(bytes.first<frame_header_bytes>(), where);
        if (!h) return state.SkipWithError("frame header rejected");
        if (h->offset != 0) return state.SkipWithError("unexpected offset");
        const auto payload = bytes.subspan(frame_header_bytes, h->payload_bytes);
        if (protocol::payload_checksum(payload) != h->checksum) return state.SkipWithError("bad checksum");
        digest.add_frame(h->offset, h->payload_bytes, h->checksum);
    }
    auto final_digest = digest.digest();
    benchmark::DoNotOptimize(final_digest);
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(frame.size()));
}
BENCHMARK(BM_RelayFrameVerifyDigest)->RangeMultiplier(4)->Range(4 << 10, 1 << 20);

// The server's side of one data frame: payload checksum, digest update, header encode.
void BM_FrameEncodeDigest(benchmark::State& state) {
    auto frame = data_frame(static_cast<std::size_t>(state.range(0)), 0);
    const auto payload = std::span<const std::byte>(frame).subspan(frame_header_bytes);
    protocol::digest_state digest;
    std::uint64_t offset = 0;
    for (auto _ : state) {
        const protocol::frame_header h{protocol::frame_type::data, 0, static_cast<std::uint32_t>(payload.size()),
                                       offset, protocol::payload_checksum(payload)};
        digest.add_frame(h.offset, h.payload_bytes, h.checksum);
        protocol::encode_frame_header(h, std::span(frame).first<frame_header_bytes>());
        benchmark::DoNotOptimize(frame.data());
        benchmark::ClobberMemory();
        offset += payload.size();
    }
    auto final_digest = digest.digest();
    benchmark::DoNotOptimize(final_digest);
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(frame.size()));
}
BENCHMARK(BM_FrameEncodeDigest)->RangeMultiplier(4)->Range(4 << 10, 1 << 20);

void BM_EndFrameEncode(benchmark::State& state) {
    protocol::digest_state digest;
    digest.add_frame(0, 4096, 0x0123456789abcdefULL);
    const auto stream_digest = digest.digest();
    std::uint64_t total = std::uint64_t{64} << 30;
    for (auto _ : state) {
        auto frame = end_frame(total++, stream_digest);
        benchmark::DoNotOptimize(frame);
    }
    state.SetBytesProcessed(state.iterations() *
                            static_cast<std::int64_t>(frame_header_bytes + protocol::end_payload_bytes));
}
BENCHMARK(BM_EndFrameEncode);

// Header check, payload checksum, end payload, digest comparison (the digest itself is final).
void BM_EndFrameDecode(benchmark::State& state) {
    protocol::digest_state digest;
    digest.add_frame(0, 4096, 0x0123456789abcdefULL);
    const auto expected = digest.digest();
    const std::uint64_t total = std::uint64_t{64} << 30;
    const auto frame = end_frame(total, expected);
    const auto bytes = std::span<const std::byte>(frame);
    for (auto _ : state) {
        auto h = protocol::decode_frame_header(bytes.first<frame_header_bytes>(), where);
        if (!h || h->type != protocol::frame_type::end) return state.SkipWithError("end frame rejected");
        const auto payload = bytes.subspan<frame_header_bytes, protocol::end_payload_bytes>();
        if (protocol::payload_checksum(payload) != h->checksum) return state.SkipWithError("bad checksum");
        const auto end = protocol::decode_end_payload(payload);
        if (end.total_bytes != total || end.digest != expected) return state.SkipWithError("wrong end payload");
    }
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(frame.size()));
}
BENCHMARK(BM_EndFrameDecode);

void BM_AssignEncode(benchmark::State& state) {
    const protocol::message m = sample_assign();
    std::size_t bytes = 0;
    for (auto _ : state) {
        auto encoded = protocol::encode_message(m);
        bytes = encoded.size();
        benchmark::DoNotOptimize(encoded.data());
    }
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(bytes));
    state.counters["message_bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_AssignEncode);

void BM_AssignDecode(benchmark::State& state) {
    const protocol::message original = sample_assign();
    const auto encoded = protocol::encode_message(original);
    const auto bytes = std::span<const std::byte>(encoded);
    for (auto _ : state) {
        auto h = protocol::decode_message_header(bytes.first<protocol::message_header_bytes>(), "server");
        if (!h) return state.SkipWithError("message header rejected");
        auto m = protocol::decode_message_body(*h, bytes.subspan(protocol::message_header_bytes), "server");
        if (!m) return state.SkipWithError("message body rejected");
        benchmark::DoNotOptimize(m->index());
    }
    auto check = protocol::decode_message_body(
        *protocol::decode_message_header(bytes.first<protocol::message_header_bytes>(), "server"),
        bytes.subspan(protocol::message_header_bytes), "server");
    if (!check || *check != original) return state.SkipWithError("assign did not round-trip");
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(encoded.size()));
    state.counters["message_bytes"] = static_cast<double>(encoded.size());
}
BENCHMARK(BM_AssignDecode);

}  // namespace
