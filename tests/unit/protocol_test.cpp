// Frames, control messages, acks and discovery: encode/decode round trips and exact errors
// for truncated, oversized, corrupted and foreign input.
#include <kaclone/protocol.hpp>

#include <algorithm>
#include <array>
#include <cstring>
#include <random>
#include <vector>

#include <gtest/gtest.h>
#include <xxhash.h>

namespace kaclone::protocol {
namespace {

std::array<std::byte, frame_header_bytes> encoded(const frame_header& h) {
    std::array<std::byte, frame_header_bytes> out{};
    encode_frame_header(h, out);
    return out;
}

TEST(FrameHeader, RoundTrips) {
    const frame_header h{frame_type::data, 3, 1u << 20, 5ull << 30, 0x0123456789abcdefull};

    const auto decoded = decode_frame_header(encoded(h), "here");

    ASSERT_TRUE(decoded.has_value()) << decoded.error().message();
    EXPECT_EQ(decoded->type, frame_type::data);
    EXPECT_EQ(decoded->stream, 3u);
    EXPECT_EQ(decoded->payload_bytes, 1u << 20);
    EXPECT_EQ(decoded->offset, 5ull << 30);
    EXPECT_EQ(decoded->checksum, 0x0123456789abcdefull);
}

TEST(FrameHeader, RejectsForeignBytes) {
    std::array<std::byte, frame_header_bytes> garbage{};
    garbage.fill(std::byte{'x'});

    const auto decoded = decode_frame_header(garbage, "stream 0 at offset 0");

    ASSERT_FALSE(decoded.has_value());
    EXPECT_EQ(decoded.error().code, errc::bad_magic);
    EXPECT_EQ(decoded.error().where, "stream 0 at offset 0");
}

// Every single-bit flip anywhere in the header is caught (by the magic or the header check).
TEST(FrameHeader, DetectsEveryBitFlip) {
    const auto good = encoded({frame_type::data, 0, 4096, 8192, 42});
    constexpr std::size_t checked_bits = 36 * 8;  // the reserved last word is not covered
    for (std::size_t bit = 0; bit < checked_bits; ++bit) {
        auto bad = good;
        bad[bit / 8] ^= std::byte{static_cast<unsigned char>(1u << (bit % 8))};
        EXPECT_FALSE(decode_frame_header(bad, "x").has_value()) << "bit " << bit;
    }
}

TEST(FrameHeader, RejectsOversizedPayloadEvenWithAValidCheck) {
    const auto bytes = encoded({frame_type::data, 0, max_frame_payload_bytes + 1, 0, 0});

    const auto decoded = decode_frame_header(bytes, "stream 0 at offset 0");

    ASSERT_FALSE(decoded.has_value());
    EXPECT_EQ(decoded.error().code, errc::oversized);
}

TEST(FrameHeader, RejectsEndFrameOfWrongSize) {
    const auto bytes = encoded({frame_type::end, 0, 7, 0, 0});

    const auto decoded = decode_frame_header(bytes, "x");

    ASSERT_FALSE(decoded.has_value());
    EXPECT_EQ(decoded.error().code, errc::bad_field);
}

TEST(EndPayload, RoundTrips) {
    end_payload p{123456789, {}};
    p.digest.bytes[0] = std::byte{0xab};
    p.digest.bytes[15] = std::byte{0xcd};
    std::array<std::byte, end_payload_bytes> out{};

    encode_end_payload(p, out);
    const auto back = decode_end_payload(out);

    EXPECT_EQ(back.total_bytes, 123456789u);
    EXPECT_EQ(back.digest, p.digest);
    EXPECT_EQ(back.digest.hex(), "ab0000000000000000000000000000cd");
}

// A payload hashed in parts, however it is cut (in a stripe, across the 256-byte stripes and
// the 1 KiB blocks XXH3 works in, one byte at a time), has the checksum of the whole; reset()
// starts a new payload.
TEST(PayloadHasher, InPartsIsTheChecksumOfTheWhole) {
    std::vector<std::byte> payload(3u << 20 | 777);
    std::mt19937_64 rng{7};
    for (auto& b : payload) b = static_cast<std::byte>(rng());
    const std::span<const std::byte> all{payload};
    payload_hasher hasher;

    for (const std::size_t part : {std::size_t{1}, std::size_t{255}, std::size_t{256}, std::size_t{1000}, std::size_t{65536},
                                   std::size_t{131072 + 13}, all.size()}) {
        hasher.reset();
        const auto n = part == 1 ? std::size_t{5000} : all.size();  // one byte at a time: a prefix
        for (std::size_t at = 0; at < n; at += std::min(part, n - at)) hasher.add(all.subspan(at, std::min(part, n - at)));
        EXPECT_EQ(hasher.checksum(), payload_checksum(all.first(n))) << "parts of " << part << " bytes";
    }
    hasher.reset();
    EXPECT_EQ(hasher.checksum(), payload_checksum({})) << "after reset, nothing added";
    EXPECT_EQ(hasher.checksum(), XXH3_64bits(nullptr, 0));
}

// The digest is XXH3-128 over 20-byte entries (u64 offset, u32 length, u64 checksum, LE):
// computed here independently, from the entries' bytes.
TEST(Digest, IsXxh3Of128BitsOfTheFrameEntries) {
    digest_state d;
    d.add_frame(0, 1u << 20, 0x0123456789abcdefull);
    d.add_frame(1u << 20, 7, 0xfedcba9876543210ull);
    const unsigned char entries[40] = {
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01,
        0, 0, 0x10, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe};
    XXH128_canonical_t want;
    XXH128_canonicalFromHash(&want, XXH3_128bits(entries, sizeof entries));

    EXPECT_EQ(std::memcmp(d.digest().bytes.data(), want.digest, 16), 0) << d.digest().hex();
}

// Every field of every frame counts, and so does their order: a payload replaced together
// with its checksum (only a keyed session's tag catches it frame by frame) still changes the
// digest, and so does a frame left out, moved or cut short.
TEST(Digest, ChangesWithEveryFieldAndTheOrder) {
    const auto of = [](std::initializer_list<std::array<std::uint64_t, 3>> frames) {
        digest_state d;
        for (const auto& f : frames) d.add_frame(f[0], static_cast<std::uint32_t>(f[1]), f[2]);
        return d.digest();
    };
    const auto base = of({{0, 100, 11}, {100, 50, 22}});

    EXPECT_EQ(of({{0, 100, 11}, {100, 50, 22}}), base);
    EXPECT_NE(of({{0, 100, 11}, {100, 50, 23}}), base);  // checksum (a forged payload)
    EXPECT_NE(of({{0, 100, 11}, {100, 49, 22}}), base);  // length
    EXPECT_NE(of({{0, 100, 11}, {101, 50, 22}}), base);  // offset
    EXPECT_NE(of({{100, 50, 22}, {0, 100, 11}}), base);  // order
    EXPECT_NE(of({{0, 100, 11}}), base);                 // a frame left out
}

TEST(Digest, OfNothingIsXxh3Of128BitsOfEmpty) {
    const digest_state empty;

    EXPECT_EQ(empty.digest().hex(), "99aa06d3014798d86001c324468d497f");
}

template <class M>
M round_trip(const M& m, std::uint32_t max_body = max_message_body_bytes) {
    const auto bytes = encode_message(m);
    const std::span<const std::byte> all{bytes};
    auto h = decode_message_header(all.template first<message_header_bytes>(), "peer", max_body);
    EXPECT_TRUE(h.has_value());
    auto back = decode_message_body(*h, all.subspan(message_header_bytes), "peer");
    EXPECT_TRUE(back.has_value()) << back.error().message();
    return std::get<M>(*back);
}

TEST(Message, EveryTypeRoundTrips) {
    EXPECT_EQ(round_trip(hello{"lab", "node07", 40123}), (hello{"lab", "node07", 40123}));
    EXPECT_EQ(round_trip(refuse{"session 'lab' is already running"}), refuse{"session 'lab' is already running"});
    const assign a{3, 2, "10.0.0.2", 4000, {{4, "10.0.0.4"}, {5, "10.0.0.5"}}, 1ull << 40, 1};
    EXPECT_EQ(round_trip(a), a);
    assign ahead = a;
    ahead.buffer_ahead = true;
    EXPECT_EQ(round_trip(ahead), ahead);
    EXPECT_EQ(round_trip(progress{99}), progress{99});
    const progress flow{99, 1234, 5'000'000'000, 7, true};
    EXPECT_EQ(round_trip(flow), flow);
    done d{true, 1234, {}, 1.5, ""};
    d.digest.bytes[3] = std::byte{9};
    EXPECT_EQ(round_trip(d), d);
    EXPECT_EQ(round_trip(release{}), release{});
    EXPECT_EQ(round_trip(data_hello{"lab", 4, 77}), (data_hello{"lab", 4, 77}));
    EXPECT_EQ(round_trip(data_hello{"lab", 4, 1ull << 33, 1ull << 32, true}), (data_hello{"lab", 4, 1ull << 33, 1ull << 32, true}));
    EXPECT_EQ(round_trip(reparent{2, "10.0.0.2", 4001}), (reparent{2, "10.0.0.2", 4001}));
    const adopt orphans{3, {{4, "10.0.0.4"}, {7, "10.0.0.7"}}};
    EXPECT_EQ(round_trip(orphans), orphans);
    EXPECT_EQ(round_trip(adopt{8, {}}), (adopt{8, {}}));
    EXPECT_EQ(round_trip(peer_lost{3, 1ull << 31, "child 3 closed the data connection"}),
              (peer_lost{3, 1ull << 31, "child 3 closed the data connection"}));
    EXPECT_EQ(round_trip(data_accept{false, "not the assigned child"}), (data_accept{false, "not the assigned child"}));
    EXPECT_EQ(round_trip(phase{node_phase::extracting, "/home (stream 2 of 3)"}), (phase{node_phase::extracting, "/home (stream 2 of 3)"}));
    const log_lines lines{{"layout: /dev/sdb: dos table", "", "mkfs.ext4 -F /dev/sdb1"}};
    EXPECT_EQ(round_trip(lines), lines);
    EXPECT_EQ(round_trip(status_ask{"lab"}), status_ask{"lab"});
    const status_answer s{"running", 1u << 30,
                          {{1, "n1", "10.0.0.2", "10.0.0.1", node_phase::fixup, 77, 123456, "initramfs"},
                           {2, "n2", "10.0.0.3", "10.0.0.2", node_phase::failed, 5, 0, "mkfs.xfs failed"}}};
    EXPECT_EQ(round_trip(s), s);
}

TEST(Message, LongStringsAreCutToWhatTheDecoderTakes) {
    // A node's failure message may be long (a tool's output); the message must still arrive.
    const std::string long_reason = "mkfs.xfs failed: " + std::string(10000, 'x');
    const done d{false, 5, {}, 1.0, long_reason};
    const done back = round_trip(d);
    EXPECT_EQ(back.message, long_reason.substr(0, 4096));
    EXPECT_EQ(round_trip(refuse{std::string(70000, 'r')}).reason, std::string(4096, 'r'));
}

TEST(Message, AStatusAnswerOfThousandsOfNodesFits) {
    // 3000 failed nodes, each with a 200-byte reason: about 700 KiB, over the 64 KiB that
    // every other message is held to.
    status_answer big{"running: 3000 of 3000 nodes finished", 1u << 30, {}};
    for (std::uint32_t k = 1; k <= 3000; ++k)
        big.rows.push_back({k, "node" + std::to_string(k), "10.1." + std::to_string(k / 256) + "." + std::to_string(k % 256),
                            "10.0.0.1", node_phase::failed, 12345, 0, std::string(200, 'r')});
    const auto bytes = encode_message(big);
    ASSERT_GT(bytes.size(), 600u << 10);
    EXPECT_EQ(round_trip(big, max_status_body_bytes), big);

    // Only the reader that asked for a status takes it: any other read, the server's from a
    // peer that has proved nothing, keeps the 64 KiB bound, also for this type.
    const auto h = decode_message_header(std::span<const std::byte>(bytes).first<message_header_bytes>(), "peer");
    ASSERT_FALSE(h.has_value());
    EXPECT_EQ(h.error().code, errc::oversized);
}

TEST(Message, UnknownPhaseIsABadField) {
    auto bytes = encode_message(phase{node_phase::done, "x"});
    bytes[message_header_bytes] = std::byte{node_phase_count};  // the first phase value after the known ones
    const std::span<const std::byte> all{bytes};
    const auto h = decode_message_header(all.first<message_header_bytes>(), "10.0.0.9:5000");
    ASSERT_TRUE(h.has_value());

    const auto m = decode_message_body(*h, all.subspan(message_header_bytes), "10.0.0.9:5000");

    ASSERT_FALSE(m.has_value());
    EXPECT_EQ(m.error().code, errc::bad_field);
    EXPECT_EQ(m.error().where, "10.0.0.9:5000");
}

TEST(Message, PhasesHaveTheirNames) {
    EXPECT_EQ(phase_name(node_phase::waiting), "waiting");
    EXPECT_EQ(phase_name(node_phase::extracting), "extracting");
    EXPECT_EQ(phase_name(node_phase::failed), "failed");
}

TEST(Message, VersionMismatchIsSaidInWords) {
    auto bytes = encode_message(release{});
    bytes[4] = std::byte{9};  // version 9

    const auto h = decode_message_header(std::span(bytes).first<message_header_bytes>(), "10.0.0.9:5000");

    ASSERT_FALSE(h.has_value());
    EXPECT_EQ(h.error().code, errc::version_mismatch);
    EXPECT_EQ(h.error().where, "10.0.0.9:5000 speaks protocol 9, this kaclone speaks " + std::to_string(version));
}

TEST(Message, OversizedBodyIsRefusedBeforeAllocation) {
    auto bytes = encode_message(release{});
    const std::uint32_t huge = 0xffffffff;
    std::memcpy(bytes.data() + 8, &huge, 4);

    const auto h = decode_message_header(std::span(bytes).first<message_header_bytes>(), "p");

    ASSERT_FALSE(h.has_value());
    EXPECT_EQ(h.error().code, errc::oversized);
}

TEST(Message, TruncatedBodyIsRefused) {
    const auto bytes = encode_message(hello{"lab", "n", 1});
    auto h = decode_message_header(std::span(bytes).first<message_header_bytes>(), "p");
    ASSERT_TRUE(h.has_value());
    h->body_bytes -= 1;

    const auto m = decode_message_body(*h, std::span(bytes).subspan(message_header_bytes, h->body_bytes), "p");

    ASSERT_FALSE(m.has_value());
    EXPECT_EQ(m.error().code, errc::truncated);
}

TEST(Message, UnknownTypeIsRefused) {
    auto bytes = encode_message(release{});
    bytes[6] = std::byte{200};
    auto h = decode_message_header(std::span(bytes).first<message_header_bytes>(), "p");
    ASSERT_TRUE(h.has_value());

    const auto m = decode_message_body(*h, {}, "p");

    ASSERT_FALSE(m.has_value());
    EXPECT_EQ(m.error().code, errc::unknown_type);
}

TEST(Ack, RoundTripsWithCompleteBit) {
    std::array<std::byte, ack_bytes> out{};

    encode_ack({1ull << 33, true}, out);
    const auto a = decode_ack(out, "child");

    ASSERT_TRUE(a.has_value());
    EXPECT_EQ(*a, (ack{1ull << 33, true}));
}

TEST(Ack, RejectsGarbage) {
    std::array<std::byte, ack_bytes> garbage{};

    const auto a = decode_ack(garbage, "child 10.0.0.3");

    ASSERT_FALSE(a.has_value());
    EXPECT_EQ(a.error().code, errc::bad_magic);
    EXPECT_EQ(a.error().where, "child 10.0.0.3");
}

TEST(Discovery, RoundTrips) {
    const discovery d{discovery::kind::answer, version, "lab3", 41000};

    const auto back = decode_discovery(encode_discovery(d), "peer");

    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(*back, d);
}

TEST(Discovery, EveryTruncationIsRefused) {
    const auto bytes = encode_discovery({discovery::kind::ask, version, "lab3", 0});
    for (std::size_t n = 0; n < bytes.size(); ++n) {
        const auto d = decode_discovery(std::span(bytes).first(n), "peer");
        ASSERT_FALSE(d.has_value()) << n;
        EXPECT_TRUE(d.error().code == errc::truncated || d.error().code == errc::bad_magic) << n;
    }
}

TEST(Discovery, RandomDatagramsNeverCrash) {
    const unsigned seed = std::random_device{}();
    std::mt19937 rng{seed};
    for (int i = 0; i < 10000; ++i) {
        std::vector<std::byte> datagram(rng() % 64);
        for (auto& b : datagram) b = static_cast<std::byte>(rng());
        if (datagram.size() >= 4 && rng() % 2) std::memcpy(datagram.data(), "KCD1", 4);
        static_cast<void>(decode_discovery(datagram, "peer"));
    }
    SUCCEED() << "seed " << seed;
}

}  // namespace
}  // namespace kaclone::protocol
