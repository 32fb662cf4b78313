// Frames, control messages, acks and discovery datagrams on random and mutated bytes: no crash,
// no exception, the exact error a header's layout calls for, errors that name the peer, round
// trips of random valid messages, and a corrupted payload always fails its checksum. Seeded
// (KACLONE_FUZZ_SEED, else the clock) and bounded to about 30000 inputs or 2 s over all six
// tests; each test prints and records its seed so a failure can be replayed.
#include <kaclone/protocol.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

// The frame header check, computed here from xxHash itself rather than trusted from protocol.cpp.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <gtest/gtest.h>

namespace kaclone::protocol {
namespace {

// Six tests share the bound: 6 x 5000 inputs, 6 x 333 ms.
constexpr int max_inputs = 5'000;
constexpr auto time_budget = std::chrono::milliseconds{333};

// The wire layout, restated so the checks do not take protocol.cpp's word for it.
constexpr std::uint32_t frame_magic = 0x3146434B;      // "KCF1"
constexpr std::uint32_t message_magic = 0x3143434B;    // "KCC1"
constexpr std::uint32_t ack_magic = 0x3141434B;        // "KCA1"
constexpr std::uint32_t discovery_magic = 0x3144434B;  // "KCD1"
constexpr std::array<std::uint32_t, 4> magics{frame_magic, message_magic, ack_magic, discovery_magic};
constexpr std::size_t max_string_bytes = 4096;  // the decoders' bound on one string
constexpr std::size_t max_discovery_bytes = 4 + 2 + 1 + 2 + max_string_bytes + 2;
constexpr std::size_t max_message_bytes = message_header_bytes + max_message_body_bytes;
constexpr std::size_t message_kinds = std::variant_size_v<message>;

using byte_string = std::vector<std::byte>;
using frame_bytes = std::array<std::byte, frame_header_bytes>;

std::uint64_t fuzz_seed() {
    if (const char* env = std::getenv("KACLONE_FUZZ_SEED"); env && *env)
        return std::strtoull(env, nullptr, 10);
    return static_cast<std::uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
}

// The seed of one test, printed and recorded.
std::uint64_t announced_seed(std::string_view test) {
    const std::uint64_t seed = fuzz_seed();
    ::testing::Test::RecordProperty("seed", std::to_string(seed));
    std::cout << "protocol fuzz " << test << " seed " << seed << " (replay with KACLONE_FUZZ_SEED="
              << seed << ")\n";
    return seed;
}

template <class T>
T get_le(const std::byte* in) {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i)
        v |= static_cast<std::uint64_t>(std::to_integer<std::uint8_t>(in[i])) << (8 * i);
    return static_cast<T>(v);
}
template <class T>
void put_le(std::byte* out, T value) {
    for (std::size_t i = 0; i < sizeof(T); ++i)
        out[i] = static_cast<std::byte>((static_cast<std::uint64_t>(value) >> (8 * i)) & 0xff);
}
// put_le into a buffer that may be too short for the field (then nothing happens).
template <class T>
void put_le_at(byte_string& b, std::size_t at, T value) {
    if (at + sizeof(T) <= b.size()) put_le(b.data() + at, value);
}

// Up to 256 bytes in hex, for failure messages.
std::string hex(std::span<const std::byte> b) {
    static constexpr std::string_view digits = "0123456789abcdef";
    std::string out;
    for (std::size_t i = 0; i < std::min<std::size_t>(b.size(), 256); ++i) {
        const auto u = std::to_integer<unsigned>(b[i]);
        out += digits[u >> 4];
        out += digits[u & 15];
    }
    if (b.size() > 256) out += "...";
    return out + " (" + std::to_string(b.size()) + " bytes)";
}

std::string said(errc e) { return make_error_code(e).message(); }
std::string said(const std::optional<errc>& e) { return e ? said(*e) : "success"; }

class fuzzer {
public:
    fuzzer(std::uint64_t seed, std::uint64_t test) : rng_(seed ^ (test * 0x9e3779b97f4a7c15ull)) {}

    // A number in [0, n).
    std::size_t pick(std::size_t n) { return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng_); }
    bool one_in(std::size_t n) { return pick(n) == 0; }
    template <class T>
    T any() {
        return static_cast<T>(rng_());
    }
    // A length in [0, max]: mostly up to `usual`, one time in 16 anywhere.
    std::size_t length(std::size_t max, std::size_t usual) {
        return one_in(16) ? pick(max + 1) : pick(std::min(max, usual) + 1);
    }
    byte_string random_bytes(std::size_t n) {
        byte_string out(n);
        for (std::size_t i = 0; i < n; i += 8) put_le_at(out, i, rng_());
        for (std::size_t i = n / 8 * 8; i < n; ++i) out[i] = static_cast<std::byte>(rng_());
        return out;
    }
    // Any bytes, NUL included, at most `max`.
    std::string text(std::size_t max) {
        const byte_string b = random_bytes(length(max, 32));
        return {reinterpret_cast<const char*>(b.data()), b.size()};
    }
    // A peer name, different each time, so an error naming it cannot be a constant.
    std::string peer() {
        std::string out = "10";
        for (int i = 0; i < 3; ++i) out += "." + std::to_string(pick(256));
        return out + ":" + std::to_string(pick(65536));
    }
    // A value for a length field whose bound is `bound`: mostly above it.
    std::uint32_t length_field(std::uint32_t bound) {
        switch (pick(6)) {
            case 0: return 0xffffffffu;
            case 1: return bound + 1;
            case 2: return bound;
            case 3: return 0x80000000u;
            case 4: return bound + 1 + static_cast<std::uint32_t>(pick(0xffffffffu - bound));
            default: return any<std::uint32_t>();
        }
    }
    // A magic number: another kaclone one or anything.
    std::uint32_t magic() { return one_in(5) ? any<std::uint32_t>() : magics[pick(magics.size())]; }

private:
    std::mt19937_64 rng_;
};

// ---------------------------------------------------------------- random valid messages

void fill(fuzzer& f, hello& m) {
    m.session = f.text(max_string_bytes);
    m.node_name = f.text(max_string_bytes);
    m.data_port = f.any<std::uint16_t>();
}
void fill(fuzzer& f, refuse& m) { m.reason = f.text(max_string_bytes); }
void fill(fuzzer& f, assign& m) {
    m.node = f.any<std::uint32_t>();
    m.parent_node = f.any<std::uint32_t>();
    m.parent_address = f.text(max_string_bytes);
    m.parent_port = f.any<std::uint16_t>();
    // A few children with any address, or many with short ones: the body stays within its bound.
    const bool many = f.one_in(16);
    for (std::size_t n = many ? f.pick(2001) : f.pick(9); n > 0; --n)
        m.children.push_back({f.any<std::uint32_t>(), f.text(many ? 16 : max_string_bytes)});
    m.stream_bytes = f.any<std::uint64_t>();
    m.relay_mode = f.any<std::uint8_t>();
    for (auto& b : m.stream_nonce) b = f.any<std::byte>();
}
void fill(fuzzer& f, progress& m) { m.stored_bytes = f.any<std::uint64_t>(); }
void fill(fuzzer& f, done& m) {
    m.ok = f.one_in(2);
    m.stored_bytes = f.any<std::uint64_t>();
    for (auto& b : m.digest.bytes) b = f.any<std::byte>();
    // Seconds travel as whole microseconds, rounded from seconds * 1e6: only values whose
    // product is exact come back equal, so multiples of 1/64 s (k * 15625 us, below 2^53).
    m.seconds = static_cast<double>(f.any<std::uint64_t>() >> 25) / 64.0;
    m.message = f.text(max_string_bytes);
}
void fill(fuzzer&, release&) {}
void fill(fuzzer& f, data_hello& m) {
    m.session = f.text(max_string_bytes);
    m.node = f.any<std::uint32_t>();
    m.resume_offset = f.any<std::uint64_t>();
    m.acked = f.any<std::uint64_t>();
    m.complete = f.one_in(2);
}
void fill(fuzzer& f, reparent& m) {
    m.parent_node = f.any<std::uint32_t>();
    m.parent_address = f.text(max_string_bytes);
    m.parent_port = f.any<std::uint16_t>();
}
void fill(fuzzer& f, adopt& m) {
    m.lost = f.any<std::uint32_t>();
    for (std::size_t n = f.pick(9); n > 0; --n) m.children.push_back({f.any<std::uint32_t>(), f.text(64)});
}
void fill(fuzzer& f, peer_lost& m) {
    m.node = f.any<std::uint32_t>();
    m.offset = f.any<std::uint64_t>();
    m.reason = f.text(max_string_bytes);
}
void fill(fuzzer& f, data_accept& m) {
    m.ok = f.one_in(2);
    m.reason = f.text(max_string_bytes);
}
void fill(fuzzer& f, go& m) { m.session = f.text(max_string_bytes); }
void fill(fuzzer& f, go_answer& m) {
    m.ok = f.one_in(2);
    m.nodes = f.any<std::uint32_t>();
    m.reason = f.text(max_string_bytes);
}

void fill(fuzzer& f, challenge& m) {
    m.keyed = f.one_in(2);
    for (auto& b : m.nonce) b = f.any<std::byte>();
}
void fill(fuzzer& f, proof& m) {
    for (auto& b : m.nonce) b = f.any<std::byte>();
    for (auto& b : m.mac) b = f.any<std::byte>();
}

node_phase any_phase(fuzzer& f) { return static_cast<node_phase>(f.pick(node_phase_count)); }
void fill(fuzzer& f, phase& m) {
    m.what = any_phase(f);
    m.detail = f.text(max_string_bytes);
}
void fill(fuzzer& f, log_lines& m) {
    for (std::size_t n = f.pick(9); n > 0; --n) m.lines.push_back(f.text(max_string_bytes));
}
void fill(fuzzer& f, status_ask& m) { m.session = f.text(max_string_bytes); }
void fill(fuzzer& f, status_answer& m) {
    m.state = f.text(max_string_bytes);
    m.expected_bytes = f.any<std::uint64_t>();
    // Rows with short strings: the body stays within its bound.
    for (std::size_t n = f.pick(40); n > 0; --n)
        m.rows.push_back({f.any<std::uint32_t>(), f.text(64), f.text(64), f.text(64), any_phase(f), f.any<std::uint64_t>(),
                          f.any<std::uint64_t>(), f.text(256)});
}

// A message kind without a `fill` above does not compile here: add one with the kind.
template <std::size_t... I>
message random_message(fuzzer& f, std::size_t index, std::index_sequence<I...>) {
    message m;
    static_cast<void>(((index == I ? (fill(f, m.template emplace<I>()), true) : false) || ...));
    return m;
}
message random_message(fuzzer& f) {
    return random_message(f, f.pick(message_kinds), std::make_index_sequence<message_kinds>{});
}

frame_header random_frame_header(fuzzer& f) {
    frame_header h;
    h.type = f.one_in(4) ? frame_type::end : frame_type::data;
    h.stream = f.any<std::uint32_t>();
    h.payload_bytes = h.type == frame_type::end
                          ? static_cast<std::uint32_t>(end_payload_bytes)
                          : static_cast<std::uint32_t>(f.pick(std::size_t{max_frame_payload_bytes} + 1));
    h.offset = f.any<std::uint64_t>();
    h.checksum = f.any<std::uint64_t>();
    return h;
}

discovery random_discovery(fuzzer& f) {
    return {f.one_in(2) ? discovery::kind::ask : discovery::kind::answer, f.any<std::uint16_t>(),
            f.text(max_string_bytes), f.any<std::uint16_t>()};
}

frame_bytes encoded(const frame_header& h) {
    frame_bytes out{};
    encode_frame_header(h, out);
    return out;
}

// ---------------------------------------------------------------- what each decoder must say

// "" when `e` is a protocol error whose `where` names `peer`, else what is wrong with it.
std::string error_problem(const error& e, std::string_view peer) {
    if (e.code.category() != category()) return "error of another category: " + e.message();
    if (e.code.value() < static_cast<int>(errc::bad_magic) || e.code.value() > static_cast<int>(errc::unauthenticated))
        return "error code " + std::to_string(e.code.value()) + " is no protocol::errc";
    if (e.where.empty()) return "error without a where: " + e.message();
    if (!e.where.starts_with(peer)) return "error '" + e.message() + "' does not name the peer " + std::string(peer);
    return "";
}

std::optional<errc> expected_message_header_error(std::span<const std::byte, message_header_bytes> in) {
    if (get_le<std::uint32_t>(in.data()) != message_magic) return errc::bad_magic;
    if (get_le<std::uint16_t>(in.data() + 4) != version) return errc::version_mismatch;
    if (get_le<std::uint32_t>(in.data() + 8) > max_message_body_bytes) return errc::oversized;
    return std::nullopt;
}

std::optional<errc> expected_frame_header_error(std::span<const std::byte, frame_header_bytes> in) {
    const std::byte* p = in.data();
    if (get_le<std::uint32_t>(p) != frame_magic) return errc::bad_magic;
    if (get_le<std::uint32_t>(p + 32) != XXH32(p, 32, 0)) return errc::bad_header_check;
    if (get_le<std::uint8_t>(p + 4) != version) return errc::version_mismatch;
    const auto type = get_le<std::uint8_t>(p + 5);
    if (type != 1 && type != 2) return errc::unknown_type;
    if (get_le<std::uint16_t>(p + 6) & ~1u) return errc::bad_field;  // flags: only bit 0 (tagged)
    const auto payload = get_le<std::uint32_t>(p + 12);
    if (payload > max_frame_payload_bytes) return errc::oversized;
    if (type == 2 && payload != end_payload_bytes) return errc::bad_field;
    return std::nullopt;
}

std::optional<errc> expected_ack_error(std::span<const std::byte, ack_bytes> in) {
    if (get_le<std::uint32_t>(in.data()) != ack_magic) return errc::bad_magic;
    if (get_le<std::uint32_t>(in.data() + 4) > 1) return errc::bad_field;
    return std::nullopt;
}

// The error for `d`, or nullopt and the datagram in `out`. Bytes after the control port are
// ignored, as decode_discovery does today.
std::optional<errc> expected_discovery_error(std::span<const std::byte> d, discovery& out) {
    if (d.size() < 4 || get_le<std::uint32_t>(d.data()) != discovery_magic) return errc::bad_magic;
    if (d.size() < 9) return errc::truncated;
    const std::size_t n = get_le<std::uint16_t>(d.data() + 7);
    if (n > max_string_bytes || d.size() < 9 + n + 2) return errc::truncated;
    const auto kind = get_le<std::uint8_t>(d.data() + 6);
    if (kind != 1 && kind != 2) return errc::unknown_type;
    out = {static_cast<discovery::kind>(kind), get_le<std::uint16_t>(d.data() + 4),
           std::string(reinterpret_cast<const char*>(d.data() + 9), n), get_le<std::uint16_t>(d.data() + 9 + n)};
    return std::nullopt;
}

// decode_message_header on `in`: the exact error, or the fields as they are on the wire (in `out`).
std::string check_message_header(std::span<const std::byte, message_header_bytes> in, std::string_view peer,
                                 std::optional<message_header>& out) {
    out.reset();
    const auto expected = expected_message_header_error(in);
    const auto h = decode_message_header(in, peer);
    if (!h) {
        if (auto p = error_problem(h.error(), peer); !p.empty()) return "message header: " + p;
        if (h.error().code != expected)
            return "message header error '" + h.error().message() + "', expected " + said(expected);
        const std::string spoken = "speaks protocol " + std::to_string(get_le<std::uint16_t>(in.data() + 4));
        if (expected == errc::version_mismatch && h.error().where.find(spoken) == std::string::npos)
            return "version mismatch not said in words: " + h.error().message();
        return "";
    }
    if (expected) return "message header accepted, expected " + said(expected);
    if (h->body_bytes > max_message_body_bytes) return "message header with an oversized body accepted";
    if (h->version != version || h->type != get_le<std::uint16_t>(in.data() + 6) ||
        h->body_bytes != get_le<std::uint32_t>(in.data() + 8))
        return "message header fields differ from the wire";
    out = *h;
    return "";
}

// Equal, but for done::seconds, which may lose its last microsecond when encoded again.
bool same_message(const message& a, const message& b) {
    const auto* x = std::get_if<done>(&a);
    const auto* y = std::get_if<done>(&b);
    if (!x || !y) return a == b;
    done x0 = *x, y0 = *y;
    x0.seconds = y0.seconds = 0;
    return x0 == y0 && std::abs(x->seconds - y->seconds) <= 1.5e-6 + std::abs(x->seconds) * 1e-15;
}

// Header and body of `bytes` decoded as a peer would.
result<message> decode_whole(std::span<const std::byte> bytes, std::string_view peer) {
    if (bytes.size() < message_header_bytes) return error{make_error_code(errc::truncated), std::string(peer)};
    const auto h = decode_message_header(bytes.first<message_header_bytes>(), peer);
    if (!h) return h.error();
    return decode_message_body(*h, bytes.subspan(message_header_bytes), peer);
}

// decode_message_body on `body`: a well-formed error, or a message of the header's type that
// encodes again to as many bytes and decodes again to the same message. `accepted` counts it.
std::string check_message_body(const message_header& h, std::span<const std::byte> body, std::string_view peer,
                               int& accepted) {
    const bool known = h.type >= 1 && h.type <= message_kinds;
    const auto m = decode_message_body(h, body, peer);
    if (!m) {
        if (auto p = error_problem(m.error(), peer); !p.empty()) return "message body: " + p;
        const auto& code = m.error().code;
        if (body.size() != h.body_bytes && code != errc::truncated)
            return "body of the wrong length: '" + m.error().message() + "', expected " + said(errc::truncated);
        if (body.size() == h.body_bytes && !known && code != errc::unknown_type)
            return "type " + std::to_string(h.type) + ": '" + m.error().message() + "', expected " +
                   said(errc::unknown_type);
        if (body.size() == h.body_bytes && known && code != errc::truncated && code != errc::bad_field)
            return "type " + std::to_string(h.type) + ": unexpected '" + m.error().message() + "'";
        return "";
    }
    ++accepted;
    if (body.size() != h.body_bytes) return "body of " + std::to_string(body.size()) + " bytes accepted for " +
                                            std::to_string(h.body_bytes);
    if (!known) return "message of unknown type " + std::to_string(h.type) + " accepted";
    if (m->index() + 1 != h.type)
        return "type " + std::to_string(h.type) + " decoded as type " + std::to_string(m->index() + 1);
    // Encoding seconds of 2^63 us or more converts a too large double to an integer (undefined).
    if (const auto* d = std::get_if<done>(&*m); d && d->seconds >= 9.2e12) return "";
    const byte_string again = encode_message(*m);
    if (again.size() != message_header_bytes + body.size())
        return "accepted body of " + std::to_string(body.size()) + " bytes encodes again to " +
               std::to_string(again.size() - message_header_bytes);
    const auto back = decode_whole(again, peer);
    if (!back) return "accepted message encodes again to bytes that fail: " + back.error().message();
    if (!same_message(*m, *back)) return "accepted message encodes again to a different one: " + hex(again);
    return "";
}

// A peer's view of `bytes`: the header, then the body if the header passed; and the body
// decoders on whatever follows the header under a type a peer could send.
std::string check_message_bytes(fuzzer& f, std::span<const std::byte> bytes, std::string_view peer, int& accepted) {
    std::span<const std::byte> body = bytes;
    std::uint16_t type = static_cast<std::uint16_t>(f.pick(message_kinds + 3));
    if (bytes.size() >= message_header_bytes) {
        std::optional<message_header> h;
        if (auto p = check_message_header(bytes.first<message_header_bytes>(), peer, h); !p.empty()) return p;
        body = bytes.subspan(message_header_bytes);
        if (h) {
            if (auto p = check_message_body(*h, body, peer, accepted); !p.empty()) return p;
        }
        if (!f.one_in(4)) type = get_le<std::uint16_t>(bytes.data() + 6);
    }
    const auto body_bytes = static_cast<std::uint32_t>(f.one_in(8) ? f.pick(body.size() + 2) : body.size());
    return check_message_body({version, type, body_bytes}, body, peer, accepted);
}

// decode_frame_header on `in`: the exact error, or the fields on the wire. `accepted` counts it.
std::string check_frame_header(std::span<const std::byte, frame_header_bytes> in, std::string_view peer,
                               int& accepted) {
    const auto expected = expected_frame_header_error(in);
    const auto h = decode_frame_header(in, peer);
    if (!h) {
        if (auto p = error_problem(h.error(), peer); !p.empty()) return "frame header: " + p;
        if (h.error().code != expected)
            return "frame header error '" + h.error().message() + "', expected " + said(expected);
        return "";
    }
    ++accepted;
    if (expected) return "frame header accepted, expected " + said(expected);
    const std::byte* p = in.data();
    if (static_cast<std::uint8_t>(h->type) != get_le<std::uint8_t>(p + 5) ||
        h->stream != get_le<std::uint32_t>(p + 8) || h->payload_bytes != get_le<std::uint32_t>(p + 12) ||
        h->offset != get_le<std::uint64_t>(p + 16) || h->checksum != get_le<std::uint64_t>(p + 24))
        return "frame header fields differ from the wire";
    return "";
}

std::string check_ack(std::span<const std::byte, ack_bytes> in, std::string_view peer, int& accepted) {
    const auto expected = expected_ack_error(in);
    const auto a = decode_ack(in, peer);
    if (!a) {
        if (auto p = error_problem(a.error(), peer); !p.empty()) return "ack: " + p;
        if (a.error().code != expected) return "ack error '" + a.error().message() + "', expected " + said(expected);
        return "";
    }
    ++accepted;
    if (expected) return "ack accepted, expected " + said(expected);
    if (*a != ack{get_le<std::uint64_t>(in.data() + 8), get_le<std::uint32_t>(in.data() + 4) == 1})
        return "ack fields differ from the wire";
    return "";
}

std::string check_discovery(std::span<const std::byte> in, std::string_view peer, int& accepted) {
    discovery want;
    const auto expected = expected_discovery_error(in, want);
    const auto d = decode_discovery(in, peer);
    if (!d) {
        if (auto p = error_problem(d.error(), peer); !p.empty()) return "discovery: " + p;
        // A stricter decoder may refuse bytes after the control port.
        const bool trailing = !expected && in.size() > 9 + want.session.size() + 2;
        if (d.error().code != expected && !trailing)
            return "discovery error '" + d.error().message() + "', expected " + said(expected);
        return "";
    }
    ++accepted;
    if (expected) return "discovery accepted, expected " + said(expected);
    if (*d != want) return "discovery fields differ from the wire";
    return "";
}

std::string check_end_payload(std::span<const std::byte, end_payload_bytes> in) {
    const end_payload p = decode_end_payload(in);
    if (p.total_bytes != get_le<std::uint64_t>(in.data()) ||
        !std::equal(p.digest.bytes.begin(), p.digest.bytes.end(), in.begin() + 8))
        return "end payload fields differ from the wire";
    std::array<std::byte, end_payload_bytes> again{};
    encode_end_payload(p, again);
    if (!std::equal(again.begin(), again.end(), in.begin())) return "end payload encodes again differently";
    return "";
}

// ---------------------------------------------------------------- mutations

// Where a variable-length layout keeps its fields, for mutations aimed at them.
struct layout {
    std::size_t version_at, version_bytes, type_at, type_bytes, length_at, length_bytes;
    std::uint32_t length_bound;
};
constexpr layout message_layout{4, 2, 6, 2, 8, 4, max_message_body_bytes};
constexpr layout discovery_layout{4, 2, 6, 1, 7, 2, max_string_bytes};

void put_sized(byte_string& b, std::size_t at, std::size_t size, std::uint64_t value) {
    if (size == 1) put_le_at(b, at, static_cast<std::uint8_t>(value));
    if (size == 2) put_le_at(b, at, static_cast<std::uint16_t>(value));
    if (size == 4) put_le_at(b, at, static_cast<std::uint32_t>(value));
}

void mutate(fuzzer& f, byte_string& b, const layout& l) {
    switch (f.pick(13)) {
        case 0:  // flip a bit
            if (!b.empty()) b[f.pick(b.size())] ^= static_cast<std::byte>(1u << f.pick(8));
            return;
        case 1:  // overwrite a byte
            if (!b.empty()) b[f.pick(b.size())] = f.any<std::byte>();
            return;
        case 2:  // truncate
            b.resize(f.pick(b.size() + 1));
            return;
        case 3: {  // extend
            const byte_string more = f.random_bytes(1 + f.length(4095, 63));
            b.insert(b.end(), more.begin(), more.end());
            return;
        }
        case 4:  // a length field over its bound: 0xffffffff, bound + 1, ...
            put_sized(b, l.length_at, l.length_bytes, f.length_field(l.length_bound));
            return;
        case 5:  // a length field off by a little
            if (l.length_at + l.length_bytes <= b.size()) {
                const std::uint64_t was = l.length_bytes == 4 ? get_le<std::uint32_t>(b.data() + l.length_at)
                                                              : get_le<std::uint16_t>(b.data() + l.length_at);
                put_sized(b, l.length_at, l.length_bytes, was + f.pick(7) - 3);
            }
            return;
        case 6:  // another magic
            put_le_at(b, 0, f.magic());
            return;
        case 7: {  // another version
            constexpr std::array<std::uint64_t, 4> versions{0, 2, 0xff, 0xffff};
            put_sized(b, l.version_at, l.version_bytes, f.one_in(4) ? f.any<std::uint64_t>() : versions[f.pick(4)]);
            return;
        }
        case 8:  // another type, known or not
            put_sized(b, l.type_at, l.type_bytes, f.one_in(8) ? f.any<std::uint64_t>() : f.pick(message_kinds + 3));
            return;
        case 9: {  // a u16 somewhere (string lengths, the child count): at or over a bound, or small
            constexpr std::array<std::uint16_t, 6> values{0xffff, 4097, 4096, 0x8000, 0, 1};
            if (b.size() < 2) return;
            const std::size_t at = f.pick(b.size() - 1);
            put_le_at(b, at, f.one_in(3) ? f.any<std::uint16_t>() : values[f.pick(6)]);
            return;
        }
        case 10: {  // insert bytes
            const byte_string more = f.random_bytes(1 + f.pick(16));
            b.insert(b.begin() + static_cast<std::ptrdiff_t>(f.pick(b.size() + 1)), more.begin(), more.end());
            return;
        }
        case 11: {  // erase a range
            const std::size_t at = f.pick(b.size() + 1);
            const std::size_t n = std::min(b.size() - at, 1 + f.pick(16));
            b.erase(b.begin() + static_cast<std::ptrdiff_t>(at), b.begin() + static_cast<std::ptrdiff_t>(at + n));
            return;
        }
        default: {  // overwrite a run
            if (b.empty()) return;
            const std::size_t at = f.pick(b.size());
            const byte_string run = f.random_bytes(std::min(b.size() - at, 1 + f.pick(16)));
            std::copy(run.begin(), run.end(), b.begin() + static_cast<std::ptrdiff_t>(at));
            return;
        }
    }
}

void reseal(frame_bytes& h) { put_le<std::uint32_t>(h.data() + 32, XXH32(h.data(), 32, 0)); }

// Mutates a frame header; `resealed` tells whether the header check was computed again after.
void mutate(fuzzer& f, frame_bytes& h, bool& resealed) {
    std::byte* p = h.data();
    switch (f.pick(9)) {
        case 0: h[f.pick(h.size())] ^= static_cast<std::byte>(1u << f.pick(8)); return;
        case 1: h[f.pick(h.size())] = f.any<std::byte>(); return;
        case 2: {  // a run of random bytes
            const std::size_t at = f.pick(h.size());
            const std::size_t end = std::min(h.size(), at + 1 + f.pick(8));
            for (std::size_t i = at; i < end; ++i) h[i] = f.any<std::byte>();
            return;
        }
        case 3: put_le(p + 12, f.length_field(max_frame_payload_bytes)); break;       // payload bytes
        case 4: put_le(p + 12, static_cast<std::uint32_t>(f.pick(64))); break;        // around 24
        case 5: put_le(p + 4, f.one_in(2) ? std::uint8_t{2} : f.any<std::uint8_t>()); break;  // version
        case 6: put_le(p + 5, static_cast<std::uint8_t>(f.one_in(2) ? f.pick(4) : f.pick(256))); break;  // type
        case 7: put_le(p, f.magic()); break;
        default: put_le(p + 6, f.any<std::uint16_t>()); break;                        // flags
    }
    if (f.one_in(5)) return;  // a field changed under the old check
    reseal(h);
    resealed = true;
}

// The 4-byte words of bytes 0..35 in which `a` and `b` differ.
std::size_t differing_words(const frame_bytes& a, const frame_bytes& b) {
    std::size_t n = 0;
    for (std::size_t w = 0; w < 9; ++w) n += !std::equal(a.begin() + 4 * w, a.begin() + 4 * w + 4, b.begin() + 4 * w);
    return n;
}

// ---------------------------------------------------------------- the tests

TEST(ProtocolFuzz, RandomBytesGetTheExactErrorNamingThePeer) {
    const std::uint64_t seed = announced_seed("random bytes");
    fuzzer f{seed, 1};

    const auto deadline = std::chrono::steady_clock::now() + time_budget;
    int inputs = 0, accepted = 0;
    for (; inputs < max_inputs && std::chrono::steady_clock::now() < deadline; ++inputs) {
        const std::string peer = f.peer();
        byte_string input;
        std::string problem;
        try {
            switch (f.pick(5)) {
                case 0:  // a control message: header and body, up to twice the largest
                    input = f.random_bytes(f.length(2 * max_message_bytes, 256));
                    problem = check_message_bytes(f, input, peer, accepted);
                    break;
                case 1: {  // a frame header, half of them with a valid magic and check
                    input = f.random_bytes(frame_header_bytes);
                    if (f.one_in(2)) {
                        put_le(input.data(), frame_magic);
                        put_le<std::uint32_t>(input.data() + 32, XXH32(input.data(), 32, 0));
                    }
                    problem = check_frame_header(std::span(input).first<frame_header_bytes>(), peer, accepted);
                    break;
                }
                case 2:
                    input = f.random_bytes(end_payload_bytes);
                    problem = check_end_payload(std::span(input).first<end_payload_bytes>());
                    break;
                case 3:  // an ack, half of them with a valid magic
                    input = f.random_bytes(ack_bytes);
                    if (f.one_in(2)) put_le(input.data(), ack_magic);
                    if (f.one_in(4)) put_le(input.data() + 4, static_cast<std::uint32_t>(f.pick(3)));
                    problem = check_ack(std::span(input).first<ack_bytes>(), peer, accepted);
                    break;
                default:  // a discovery datagram, half of them with a valid magic
                    input = f.random_bytes(f.length(2 * max_discovery_bytes, 64));
                    if (f.one_in(2)) put_le_at(input, 0, discovery_magic);
                    problem = check_discovery(input, peer, accepted);
                    break;
            }
        } catch (const std::exception& e) {
            problem = std::string("exception: ") + e.what();
        }
        if (!problem.empty()) {
            ADD_FAILURE() << "seed " << seed << ": " << problem << "\n  input " << hex(input);
            break;
        }
    }
    std::cout << "protocol fuzz random bytes: " << inputs << " inputs, " << accepted << " accepted\n";
    RecordProperty("inputs", inputs);
    EXPECT_GT(accepted, 0);
}

TEST(ProtocolFuzz, ValidEncodingsRoundTrip) {
    const std::uint64_t seed = announced_seed("round trip");
    fuzzer f{seed, 2};

    const auto deadline = std::chrono::steady_clock::now() + time_budget;
    int inputs = 0;
    for (; inputs < max_inputs && std::chrono::steady_clock::now() < deadline; ++inputs) {
        const std::string peer = f.peer();
        byte_string input;
        std::string problem;
        try {
            switch (f.pick(4)) {
                case 0: {  // every message kind alike
                    const message m = random_message(f);
                    input = encode_message(m);
                    const auto back = decode_whole(input, peer);
                    if (input.size() > max_message_bytes) problem = "valid message encodes over the body bound";
                    else if (get_le<std::uint16_t>(input.data() + 6) != m.index() + 1) problem = "wrong type number";
                    else if (!back) problem = "valid message fails: " + back.error().message();
                    else if (!(*back == m)) problem = "message decodes differently";
                    else if (encode_message(*back) != input) problem = "decoded message encodes differently";
                    break;
                }
                case 1: {
                    const frame_header h = random_frame_header(f);
                    const frame_bytes bytes = encoded(h);
                    input.assign(bytes.begin(), bytes.end());
                    const auto back = decode_frame_header(bytes, peer);
                    if (!back) problem = "valid frame header fails: " + back.error().message();
                    else if (back->type != h.type || back->stream != h.stream ||
                             back->payload_bytes != h.payload_bytes || back->offset != h.offset ||
                             back->checksum != h.checksum)
                        problem = "frame header decodes differently";
                    else if (encoded(*back) != bytes) problem = "decoded frame header encodes differently";
                    break;
                }
                case 2: {
                    const ack a{f.any<std::uint64_t>(), f.one_in(2)};
                    std::array<std::byte, ack_bytes> bytes{};
                    encode_ack(a, bytes);
                    input.assign(bytes.begin(), bytes.end());
                    const auto back = decode_ack(bytes, peer);
                    if (!back) problem = "valid ack fails: " + back.error().message();
                    else if (*back != a) problem = "ack decodes differently";
                    break;
                }
                default: {
                    const discovery d = random_discovery(f);
                    input = encode_discovery(d);
                    const auto back = decode_discovery(input, peer);
                    if (!back) problem = "valid discovery fails: " + back.error().message();
                    else if (*back != d) problem = "discovery decodes differently";
                    break;
                }
            }
        } catch (const std::exception& e) {
            problem = std::string("exception: ") + e.what();
        }
        if (!problem.empty()) {
            ADD_FAILURE() << "seed " << seed << ": " << problem << "\n  encoding " << hex(input);
            break;
        }
    }
    std::cout << "protocol fuzz round trip: " << inputs << " inputs\n";
    RecordProperty("inputs", inputs);
}

TEST(ProtocolFuzz, MutatedMessagesAreRejectedOrEncodeAgainAlike) {
    const std::uint64_t seed = announced_seed("mutated messages");
    fuzzer f{seed, 3};

    const auto deadline = std::chrono::steady_clock::now() + time_budget;
    int inputs = 0, accepted = 0;
    for (; inputs < max_inputs && std::chrono::steady_clock::now() < deadline; ++inputs) {
        const std::string peer = f.peer();
        byte_string input;
        std::string problem;
        try {
            switch (f.pick(4)) {
                case 0:
                case 1: {
                    input = encode_message(random_message(f));
                    for (std::size_t n = 1 + f.pick(3); n > 0; --n) mutate(f, input, message_layout);
                    problem = check_message_bytes(f, input, peer, accepted);
                    break;
                }
                case 2: {
                    input = encode_discovery(random_discovery(f));
                    for (std::size_t n = 1 + f.pick(3); n > 0; --n) mutate(f, input, discovery_layout);
                    problem = check_discovery(input, peer, accepted);
                    break;
                }
                default: {
                    std::array<std::byte, ack_bytes> bytes{};
                    encode_ack({f.any<std::uint64_t>(), f.one_in(2)}, bytes);
                    input.assign(bytes.begin(), bytes.end());
                    for (std::size_t n = 1 + f.pick(3); n > 0; --n) {
                        const std::size_t at = f.pick(ack_bytes);
                        if (f.one_in(4)) put_le(input.data(), f.magic());
                        else if (f.one_in(3))
                            put_le(input.data() + 4,
                                   f.one_in(2) ? f.length_field(1) : static_cast<std::uint32_t>(f.pick(3)));
                        else input[at] ^= static_cast<std::byte>(1 + f.pick(255));
                    }
                    problem = check_ack(std::span(input).first<ack_bytes>(), peer, accepted);
                    break;
                }
            }
        } catch (const std::exception& e) {
            problem = std::string("exception: ") + e.what();
        }
        if (!problem.empty()) {
            ADD_FAILURE() << "seed " << seed << ": " << problem << "\n  input " << hex(input);
            break;
        }
    }
    std::cout << "protocol fuzz mutated messages: " << inputs << " inputs, " << accepted << " accepted\n";
    RecordProperty("inputs", inputs);
    EXPECT_GT(accepted, 0);
    EXPECT_LT(accepted, inputs);
}

TEST(ProtocolFuzz, BodyLengthOverTheBoundIsRefusedByTheHeader) {
    const std::uint64_t seed = announced_seed("body length");
    fuzzer f{seed, 4};

    const auto deadline = std::chrono::steady_clock::now() + time_budget;
    int inputs = 0;
    for (; inputs < max_inputs && std::chrono::steady_clock::now() < deadline; ++inputs) {
        const std::string peer = f.peer();
        byte_string input = encode_message(random_message(f));
        const std::uint32_t body_bytes = f.length_field(max_message_body_bytes);
        if (body_bytes <= max_message_body_bytes) continue;
        put_le(input.data() + 8, body_bytes);

        const auto h = decode_message_header(std::span(input).first<message_header_bytes>(), peer);

        if (h || h.error().code != errc::oversized || h.error().where != peer) {
            ADD_FAILURE() << "seed " << seed << ": body length " << body_bytes << " gives "
                          << (h ? "a header" : "'" + h.error().message() + "'") << ", expected "
                          << said(errc::oversized) << " naming " << peer << "\n  input " << hex(input);
            break;
        }
    }
    std::cout << "protocol fuzz body length: " << inputs << " inputs\n";
    RecordProperty("inputs", inputs);
}

TEST(ProtocolFuzz, MutatedFrameHeadersGetTheExactError) {
    const std::uint64_t seed = announced_seed("mutated frame headers");
    fuzzer f{seed, 5};

    const auto deadline = std::chrono::steady_clock::now() + time_budget;
    int inputs = 0, accepted = 0;
    for (; inputs < max_inputs && std::chrono::steady_clock::now() < deadline; ++inputs) {
        const std::string peer = f.peer();
        const frame_bytes good = encoded(random_frame_header(f));
        frame_bytes bad = good;
        bool resealed = false;
        for (std::size_t n = 1 + f.pick(2); n > 0; --n) mutate(f, bad, resealed);
        std::string problem;

        try {
            problem = check_frame_header(bad, peer, accepted);
            // XXH32 of 32 bytes is a bijection of each 4-byte word when the others stay: a
            // change inside one word of bytes 0..35 can never pass the header check.
            if (problem.empty() && !resealed && differing_words(good, bad) == 1 &&
                decode_frame_header(bad, peer).has_value())
                problem = "a header corrupted in one word was accepted";
        } catch (const std::exception& e) {
            problem = std::string("exception: ") + e.what();
        }

        if (!problem.empty()) {
            ADD_FAILURE() << "seed " << seed << ": " << problem << "\n  header was " << hex(good)
                          << "\n  mutated to  " << hex(bad);
            break;
        }
    }
    std::cout << "protocol fuzz mutated frame headers: " << inputs << " inputs, " << accepted << " accepted\n";
    RecordProperty("inputs", inputs);
    EXPECT_GT(accepted, 0);
    EXPECT_LT(accepted, inputs);
}

TEST(ProtocolFuzz, CorruptedPayloadFailsTheChecksum) {
    const std::uint64_t seed = announced_seed("payload checksum");
    fuzzer f{seed, 6};

    const auto deadline = std::chrono::steady_clock::now() + time_budget;
    int inputs = 0;
    for (; inputs < max_inputs && std::chrono::steady_clock::now() < deadline; ++inputs) {
        const std::string peer = f.peer();
        frame_header sent;
        byte_string payload;
        if (f.one_in(4)) {
            sent.type = frame_type::end;
            end_payload e{f.any<std::uint64_t>(), {}};
            for (auto& b : e.digest.bytes) b = f.any<std::byte>();
            payload.resize(end_payload_bytes);
            encode_end_payload(e, std::span(payload).first<end_payload_bytes>());
        } else {
            payload = f.random_bytes(1 + (f.one_in(32) ? f.pick(256 << 10) : f.pick(4096)));
        }
        sent.stream = f.any<std::uint32_t>();
        sent.payload_bytes = static_cast<std::uint32_t>(payload.size());
        sent.offset = f.any<std::uint64_t>();
        sent.checksum = payload_checksum(payload);
        const frame_bytes header = encoded(sent);
        byte_string corrupted = payload;
        std::string how;
        if (f.one_in(8)) {
            corrupted.resize(f.pick(payload.size()));
            how = "truncated to " + std::to_string(corrupted.size());
        } else if (f.one_in(8)) {
            const byte_string more = f.random_bytes(1 + f.pick(64));
            corrupted.insert(corrupted.end(), more.begin(), more.end());
            how = "extended to " + std::to_string(corrupted.size());
        } else {
            const std::size_t at = f.pick(payload.size());
            corrupted[at] ^= static_cast<std::byte>(1 + f.pick(255));
            how = "byte " + std::to_string(at) + " flipped";
        }

        const auto h = decode_frame_header(header, peer);

        std::string problem;
        if (!h) problem = "valid header fails: " + h.error().message();
        else if (payload_checksum(payload) != h->checksum) problem = "intact payload fails its checksum";
        else if (payload_checksum(corrupted) == h->checksum) problem = "payload " + how + " passes its checksum";
        if (!problem.empty()) {
            ADD_FAILURE() << "seed " << seed << ": " << problem << "\n  header " << hex(header) << "\n  payload "
                          << hex(payload);
            break;
        }
    }
    std::cout << "protocol fuzz payload checksum: " << inputs << " inputs\n";
    RecordProperty("inputs", inputs);
}

}  // namespace
}  // namespace kaclone::protocol
