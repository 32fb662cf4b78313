// Encoding and decoding of frames, control messages, acks and discovery datagrams.
#include <kaclone/protocol.hpp>

#include <cmath>
#include <cstring>

// The payload checksum goes through libxxhash's run-time dispatch: its plain XXH3 entry points
// are built for the distribution's baseline (SSE2); the dispatch ones use AVX2 or AVX-512 where
// the CPU has them, with the same result (bench/checksum_bench, 1 MiB: 13 against 32-41 GB/s).
#include <xxhash.h>
#if defined(__x86_64__)
#include <xxh_x86dispatch.h>
#endif

namespace kaclone::protocol {
namespace {

XXH64_hash_t xxh3_64(const void* data, std::size_t bytes) noexcept {
#if defined(__x86_64__)
    return XXH3_64bits_dispatch(data, bytes);
#else
    return XXH3_64bits(data, bytes);
#endif
}

XXH3_state_t* xxh3(const xxh3_state& s) noexcept { return static_cast<XXH3_state_t*>(s.get()); }

void xxh3_64_update(XXH3_state_t* state, const void* data, std::size_t bytes) noexcept {
#if defined(__x86_64__)
    XXH3_64bits_update_dispatch(state, data, bytes);
#else
    XXH3_64bits_update(state, data, bytes);
#endif
}

const char* describe(errc e) noexcept {
    switch (e) {
        case errc::bad_magic: return "not a kaclone peer (bad magic)";
        case errc::version_mismatch: return "protocol version mismatch";
        case errc::bad_header_check: return "frame header corrupted (header check mismatch)";
        case errc::oversized: return "length field too large";
        case errc::unknown_type: return "unknown frame or message type";
        case errc::truncated: return "truncated input";
        case errc::bad_checksum: return "checksum mismatch";
        case errc::bad_field: return "invalid message field";
        case errc::bad_tag: return "frame tag does not verify (bytes altered or injected)";
        case errc::unauthenticated: return "authentication failed";
    }
    return "unknown protocol error";
}

constexpr std::uint32_t frame_magic = 0x3146434B;      // "KCF1" little-endian
constexpr std::uint32_t message_magic = 0x3143434B;    // "KCC1"
constexpr std::uint32_t ack_magic = 0x3141434B;        // "KCA1"
constexpr std::uint32_t discovery_magic = 0x3144434B;  // "KCD1"
constexpr std::size_t max_string_bytes = 4096;

template <class T>
void put_le(std::byte* out, T value) noexcept {
    for (std::size_t i = 0; i < sizeof(T); ++i)
        out[i] = static_cast<std::byte>((static_cast<std::uint64_t>(value) >> (8 * i)) & 0xff);
}
template <class T>
T get_le(const std::byte* in) noexcept {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i)
        v |= static_cast<std::uint64_t>(std::to_integer<std::uint8_t>(in[i])) << (8 * i);
    return static_cast<T>(v);
}

// Appends little-endian fields to a growing buffer.
class byte_writer {
public:
    template <class T>
    void put(T value) {
        const std::size_t at = out_.size();
        out_.resize(at + sizeof(T));
        put_le(out_.data() + at, value);
    }
    // A string longer than the decoder takes (a long error message, a node's log) is cut to
    // max_string_bytes: sent whole it would be refused, and with it the message it is in.
    void put_string(std::string_view s) {
        s = s.substr(0, max_string_bytes);
        put(static_cast<std::uint16_t>(s.size()));
        put_bytes(std::as_bytes(std::span(s.data(), s.size())));
    }
    void put_bytes(std::span<const std::byte> b) { out_.insert(out_.end(), b.begin(), b.end()); }
    std::vector<std::byte>& bytes() noexcept { return out_; }

private:
    std::vector<std::byte> out_;
};

// Reads little-endian fields; the first field that does not fit sets `failed` and every read
// after it returns zero values, so a decoder checks once at the end.
class byte_reader {
public:
    explicit byte_reader(std::span<const std::byte> in) noexcept : in_(in) {}
    template <class T>
    T get() noexcept {
        if (!take(sizeof(T))) return T{};
        return get_le<T>(in_.data() + pos_ - sizeof(T));
    }
    std::string get_string() {
        const auto n = get<std::uint16_t>();
        if (n > max_string_bytes || !take(n)) {
            failed = true;
            return {};
        }
        return {reinterpret_cast<const char*>(in_.data() + pos_ - n), n};
    }
    void get_bytes(std::span<std::byte> out) noexcept {
        if (take(out.size())) std::memcpy(out.data(), in_.data() + pos_ - out.size(), out.size());
    }
    bool done() const noexcept { return !failed && pos_ == in_.size(); }
    bool failed = false;

private:
    bool take(std::size_t n) noexcept {
        if (failed || in_.size() - pos_ < n) {
            failed = true;
            return false;
        }
        pos_ += n;
        return true;
    }
    std::span<const std::byte> in_;
    std::size_t pos_ = 0;
};

error protocol_error(errc e, std::string_view where) { return error{make_error_code(e), std::string(where)}; }

void put_children(byte_writer& w, const std::vector<child_slot>& children) {
    w.put(static_cast<std::uint16_t>(children.size()));
    for (const auto& c : children) {
        w.put(c.node);
        w.put_string(c.address);
    }
}
void encode_body(byte_writer& w, const hello& m) {
    w.put_string(m.session);
    w.put_string(m.node_name);
    w.put(m.data_port);
}
void encode_body(byte_writer& w, const refuse& m) { w.put_string(m.reason); }
void encode_body(byte_writer& w, const assign& m) {
    w.put(m.node);
    w.put(m.parent_node);
    w.put_string(m.parent_address);
    w.put(m.parent_port);
    put_children(w, m.children);
    w.put(m.stream_bytes);
    w.put(m.relay_mode);
    w.put(static_cast<std::uint8_t>(m.buffer_ahead ? 1 : 0));
    w.put_bytes(m.stream_nonce);
}
void encode_body(byte_writer& w, const progress& m) {
    w.put(m.stored_bytes);
    w.put(m.intake_wire_bytes);
    w.put(m.held_ns);
    w.put(m.sink_busy_ns);
    w.put(static_cast<std::uint8_t>(m.held ? 1 : 0));
}
void encode_body(byte_writer& w, const done& m) {
    w.put(static_cast<std::uint8_t>(m.ok));
    w.put(m.stored_bytes);
    w.put_bytes(m.digest.bytes);
    // Rounded to whole microseconds; negative, NaN and absurd values send 0.
    const double us = m.seconds * 1e6;
    w.put(us >= 0 && us < 9e18 ? static_cast<std::uint64_t>(std::llround(us)) : std::uint64_t{0});
    w.put_string(m.message);
}
void encode_body(byte_writer&, const release&) {}
void encode_body(byte_writer& w, const data_hello& m) {
    w.put_string(m.session);
    w.put(m.node);
    w.put(m.resume_offset);
    w.put(m.acked);
    w.put(static_cast<std::uint8_t>(m.complete));
}
void encode_body(byte_writer& w, const data_accept& m) {
    w.put(static_cast<std::uint8_t>(m.ok));
    w.put_string(m.reason);
}

void encode_body(byte_writer& w, const go& m) { w.put_string(m.session); }
void encode_body(byte_writer& w, const challenge& m) {
    w.put(static_cast<std::uint8_t>(m.keyed));
    w.put_bytes(m.nonce);
}
void encode_body(byte_writer& w, const proof& m) {
    w.put_bytes(m.nonce);
    w.put_bytes(m.mac);
}
void encode_body(byte_writer& w, const go_answer& m) {
    w.put(static_cast<std::uint8_t>(m.ok));
    w.put(m.nodes);
    w.put_string(m.reason);
}

void encode_body(byte_writer& w, const phase& m) {
    w.put(static_cast<std::uint8_t>(m.what));
    w.put_string(m.detail);
}
void encode_body(byte_writer& w, const log_lines& m) {
    w.put(static_cast<std::uint16_t>(m.lines.size()));
    for (const auto& line : m.lines) w.put_string(line);
}
void encode_body(byte_writer& w, const status_ask& m) { w.put_string(m.session); }
void encode_body(byte_writer& w, const status_answer& m) {
    w.put_string(m.state);
    w.put(m.expected_bytes);
    w.put(static_cast<std::uint16_t>(m.rows.size()));
    for (const auto& row : m.rows) {
        w.put(row.node);
        w.put_string(row.name);
        w.put_string(row.address);
        w.put_string(row.parent_address);
        w.put(static_cast<std::uint8_t>(row.what));
        w.put(row.stored_bytes);
        w.put(row.bytes_per_second);
        w.put_string(row.detail);
    }
}
void encode_body(byte_writer& w, const reparent& m) {
    w.put(m.parent_node);
    w.put_string(m.parent_address);
    w.put(m.parent_port);
}
void encode_body(byte_writer& w, const adopt& m) {
    w.put(m.lost);
    put_children(w, m.children);
}
void encode_body(byte_writer& w, const peer_lost& m) {
    w.put(m.node);
    w.put(m.offset);
    w.put_string(m.reason);
}

std::vector<child_slot> get_children(byte_reader& r) {
    std::vector<child_slot> children;
    const auto n = r.get<std::uint16_t>();
    for (std::uint16_t i = 0; i < n && !r.failed; ++i) {
        child_slot c;
        c.node = r.get<std::uint32_t>();
        c.address = r.get_string();
        children.push_back(std::move(c));
    }
    return children;
}
// A phase byte this version knows, else bad_field for the whole message.
node_phase get_phase(byte_reader& r, bool& bad) noexcept {
    const auto v = r.get<std::uint8_t>();
    if (v >= node_phase_count) bad = true;
    return static_cast<node_phase>(v);
}

void decode_body(byte_reader& r, reparent& m) {
    m.parent_node = r.get<std::uint32_t>();
    m.parent_address = r.get_string();
    m.parent_port = r.get<std::uint16_t>();
}
void decode_body(byte_reader& r, adopt& m) {
    m.lost = r.get<std::uint32_t>();
    m.children = get_children(r);
}
void decode_body(byte_reader& r, peer_lost& m) {
    m.node = r.get<std::uint32_t>();
    m.offset = r.get<std::uint64_t>();
    m.reason = r.get_string();
}

void decode_body(byte_reader& r, hello& m) {
    m.session = r.get_string();
    m.node_name = r.get_string();
    m.data_port = r.get<std::uint16_t>();
}
void decode_body(byte_reader& r, refuse& m) { m.reason = r.get_string(); }
void decode_body(byte_reader& r, assign& m) {
    m.node = r.get<std::uint32_t>();
    m.parent_node = r.get<std::uint32_t>();
    m.parent_address = r.get_string();
    m.parent_port = r.get<std::uint16_t>();
    m.children = get_children(r);
    m.stream_bytes = r.get<std::uint64_t>();
    m.relay_mode = r.get<std::uint8_t>();
    m.buffer_ahead = r.get<std::uint8_t>() != 0;
    r.get_bytes(m.stream_nonce);
}
void decode_body(byte_reader& r, progress& m) {
    m.stored_bytes = r.get<std::uint64_t>();
    m.intake_wire_bytes = r.get<std::uint64_t>();
    m.held_ns = r.get<std::uint64_t>();
    m.sink_busy_ns = r.get<std::uint64_t>();
    m.held = r.get<std::uint8_t>() != 0;
}
void decode_body(byte_reader& r, done& m) {
    m.ok = r.get<std::uint8_t>() != 0;
    m.stored_bytes = r.get<std::uint64_t>();
    r.get_bytes(m.digest.bytes);
    m.seconds = static_cast<double>(r.get<std::uint64_t>()) / 1e6;
    m.message = r.get_string();
}
void decode_body(byte_reader&, release&) {}
void decode_body(byte_reader& r, data_hello& m) {
    m.session = r.get_string();
    m.node = r.get<std::uint32_t>();
    m.resume_offset = r.get<std::uint64_t>();
    m.acked = r.get<std::uint64_t>();
    m.complete = r.get<std::uint8_t>() != 0;
}
void decode_body(byte_reader& r, data_accept& m) {
    m.ok = r.get<std::uint8_t>() != 0;
    m.reason = r.get_string();
}

void decode_body(byte_reader& r, go& m) { m.session = r.get_string(); }
void decode_body(byte_reader& r, challenge& m) {
    m.keyed = r.get<std::uint8_t>() != 0;
    r.get_bytes(m.nonce);
}
void decode_body(byte_reader& r, proof& m) {
    r.get_bytes(m.nonce);
    r.get_bytes(m.mac);
}
void decode_body(byte_reader& r, go_answer& m) {
    m.ok = r.get<std::uint8_t>() != 0;
    m.nodes = r.get<std::uint32_t>();
    m.reason = r.get_string();
}

void decode_body(byte_reader& r, phase& m, bool& bad) {
    m.what = get_phase(r, bad);
    m.detail = r.get_string();
}
void decode_body(byte_reader& r, log_lines& m) {
    const auto n = r.get<std::uint16_t>();
    for (std::uint16_t i = 0; i < n && !r.failed; ++i) m.lines.push_back(r.get_string());
}
void decode_body(byte_reader& r, status_ask& m) { m.session = r.get_string(); }
void decode_body(byte_reader& r, status_answer& m, bool& bad) {
    m.state = r.get_string();
    m.expected_bytes = r.get<std::uint64_t>();
    const auto n = r.get<std::uint16_t>();
    for (std::uint16_t i = 0; i < n && !r.failed; ++i) {
        status_row row;
        row.node = r.get<std::uint32_t>();
        row.name = r.get_string();
        row.address = r.get_string();
        row.parent_address = r.get_string();
        row.what = get_phase(r, bad);
        row.stored_bytes = r.get<std::uint64_t>();
        row.bytes_per_second = r.get<std::uint64_t>();
        row.detail = r.get_string();
        m.rows.push_back(std::move(row));
    }
}
// Messages whose fields cannot all be right are checked while decoding.
template <class M>
void decode_body(byte_reader& r, M& m, bool&) {
    decode_body(r, m);
}

// Decodes alternative `index` of `message`; recursion over the variant's indices.
template <std::size_t I = 0>
result<message> decode_alternative(std::size_t index, byte_reader& r, std::string_view peer) {
    if constexpr (I == std::variant_size_v<message>) {
        return protocol_error(errc::unknown_type, peer);
    } else {
        if (index != I) return decode_alternative<I + 1>(index, r, peer);
        std::variant_alternative_t<I, message> m;
        bool bad = false;
        decode_body(r, m, bad);
        if (!r.done()) return protocol_error(errc::truncated, peer);
        if (bad) return protocol_error(errc::bad_field, peer);
        return message{std::move(m)};
    }
}

}  // namespace

const std::error_category& category() noexcept {
    static const enum_category<errc> instance{"kaclone.protocol", describe};
    return instance;
}
std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), category()}; }

std::string_view phase_name(node_phase p) noexcept {
    switch (p) {
        case node_phase::waiting: return "waiting";
        case node_phase::layout: return "layout";
        case node_phase::receiving: return "receiving";
        case node_phase::extracting: return "extracting";
        case node_phase::fixup: return "fixup";
        case node_phase::done: return "done";
        case node_phase::failed: return "failed";
    }
    return "?";
}

std::string stream_digest::hex() const {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    for (std::byte b : bytes) {
        out += digits[std::to_integer<unsigned>(b) >> 4];
        out += digits[std::to_integer<unsigned>(b) & 15];
    }
    return out;
}

void encode_frame_header(const frame_header& h, std::span<std::byte, frame_header_bytes> out) noexcept {
    std::byte* p = out.data();
    put_le<std::uint32_t>(p, frame_magic);
    put_le<std::uint8_t>(p + 4, static_cast<std::uint8_t>(version));
    put_le<std::uint8_t>(p + 5, static_cast<std::uint8_t>(h.type));
    put_le<std::uint16_t>(p + 6, h.tagged ? 1 : 0);
    put_le<std::uint32_t>(p + 8, h.stream);
    put_le<std::uint32_t>(p + 12, h.payload_bytes);
    put_le<std::uint64_t>(p + 16, h.offset);
    put_le<std::uint64_t>(p + 24, h.checksum);
    put_le<std::uint32_t>(p + 32, XXH32(p, 32, 0));
    put_le<std::uint32_t>(p + 36, 0);
}

result<frame_header> decode_frame_header(std::span<const std::byte, frame_header_bytes> in,
                                         std::string_view where) {
    const std::byte* p = in.data();
    if (get_le<std::uint32_t>(p) != frame_magic) return protocol_error(errc::bad_magic, where);
    if (get_le<std::uint32_t>(p + 32) != XXH32(p, 32, 0))
        return protocol_error(errc::bad_header_check, where);
    if (get_le<std::uint8_t>(p + 4) != version) return protocol_error(errc::version_mismatch, where);
    frame_header h;
    const auto type = get_le<std::uint8_t>(p + 5);
    if (type != static_cast<std::uint8_t>(frame_type::data) && type != static_cast<std::uint8_t>(frame_type::end))
        return protocol_error(errc::unknown_type, where);
    h.type = static_cast<frame_type>(type);
    h.stream = get_le<std::uint32_t>(p + 8);
    h.payload_bytes = get_le<std::uint32_t>(p + 12);
    h.offset = get_le<std::uint64_t>(p + 16);
    h.checksum = get_le<std::uint64_t>(p + 24);
    const auto flags = get_le<std::uint16_t>(p + 6);
    if (flags & ~1u) return protocol_error(errc::bad_field, where);
    h.tagged = (flags & 1u) != 0;
    if (h.payload_bytes > max_frame_payload_bytes) return protocol_error(errc::oversized, where);
    if (h.type == frame_type::end && h.payload_bytes != end_payload_bytes)
        return protocol_error(errc::bad_field, where);
    return h;
}

std::uint64_t payload_checksum(std::span<const std::byte> payload) noexcept {
    return xxh3_64(payload.data(), payload.size());
}

xxh3_state::xxh3_state() : state_(XXH3_createState()) { KACLONE_ASSERT(state_ != nullptr); }
xxh3_state::~xxh3_state() { XXH3_freeState(static_cast<XXH3_state_t*>(state_)); }

void payload_hasher::reset() noexcept { XXH3_64bits_reset(xxh3(state_)); }
void payload_hasher::add(std::span<const std::byte> part) noexcept { xxh3_64_update(xxh3(state_), part.data(), part.size()); }
std::uint64_t payload_hasher::checksum() const noexcept { return XXH3_64bits_digest(xxh3(state_)); }

void encode_end_payload(const end_payload& p, std::span<std::byte, end_payload_bytes> out) noexcept {
    put_le<std::uint64_t>(out.data(), p.total_bytes);
    std::memcpy(out.data() + 8, p.digest.bytes.data(), 16);
}

end_payload decode_end_payload(std::span<const std::byte, end_payload_bytes> in) noexcept {
    end_payload p;
    p.total_bytes = get_le<std::uint64_t>(in.data());
    std::memcpy(p.digest.bytes.data(), in.data() + 8, 16);
    return p;
}

digest_state::digest_state() noexcept { XXH3_128bits_reset(xxh3(state_)); }
void digest_state::add_frame(std::uint64_t offset, std::uint32_t payload_bytes, std::uint64_t checksum) noexcept {
    std::array<std::byte, 20> entry;
    put_le<std::uint64_t>(entry.data(), offset);
    put_le<std::uint32_t>(entry.data() + 8, payload_bytes);
    put_le<std::uint64_t>(entry.data() + 12, checksum);
    XXH3_128bits_update(xxh3(state_), entry.data(), entry.size());
}
stream_digest digest_state::digest() const noexcept {
    XXH128_canonical_t canonical;
    XXH128_canonicalFromHash(&canonical, XXH3_128bits_digest(xxh3(state_)));
    stream_digest d;
    std::memcpy(d.bytes.data(), canonical.digest, 16);
    return d;
}

std::vector<std::byte> encode_message(const message& m) {
    byte_writer w;
    w.put(message_magic);
    w.put(version);
    w.put(static_cast<std::uint16_t>(m.index() + 1));
    w.put(std::uint32_t{0});  // body length, patched below
    std::visit([&w](const auto& body) { encode_body(w, body); }, m);
    auto& out = w.bytes();
    put_le<std::uint32_t>(out.data() + 8, static_cast<std::uint32_t>(out.size() - message_header_bytes));
    return std::move(out);
}

result<message_header> decode_message_header(std::span<const std::byte, message_header_bytes> in,
                                             std::string_view peer, std::uint32_t max_body) {
    const std::byte* p = in.data();
    if (get_le<std::uint32_t>(p) != message_magic) return protocol_error(errc::bad_magic, peer);
    message_header h{get_le<std::uint16_t>(p + 4), get_le<std::uint16_t>(p + 6), get_le<std::uint32_t>(p + 8)};
    if (h.version != version)
        return error{make_error_code(errc::version_mismatch),
                     std::string(peer) + " speaks protocol " + std::to_string(h.version) +
                         ", this kaclone speaks " + std::to_string(version)};
    if (h.body_bytes > max_body) return protocol_error(errc::oversized, peer);
    return h;
}

result<message> decode_message_body(const message_header& h, std::span<const std::byte> body,
                                    std::string_view peer) {
    if (body.size() != h.body_bytes) return protocol_error(errc::truncated, peer);
    if (h.type == 0) return protocol_error(errc::unknown_type, peer);
    byte_reader r{body};
    return decode_alternative(h.type - 1u, r, peer);
}

void encode_ack(const ack& a, std::span<std::byte, ack_bytes> out) noexcept {
    put_le<std::uint32_t>(out.data(), ack_magic);
    put_le<std::uint32_t>(out.data() + 4, a.complete ? 1u : 0u);
    put_le<std::uint64_t>(out.data() + 8, a.offset);
}

result<ack> decode_ack(std::span<const std::byte, ack_bytes> in, std::string_view peer) {
    if (get_le<std::uint32_t>(in.data()) != ack_magic) return protocol_error(errc::bad_magic, peer);
    const auto flags = get_le<std::uint32_t>(in.data() + 4);
    if (flags > 1) return protocol_error(errc::bad_field, peer);
    return ack{get_le<std::uint64_t>(in.data() + 8), flags == 1};
}

std::vector<std::byte> encode_discovery(const discovery& d) {
    byte_writer w;
    w.put(discovery_magic);
    w.put(d.version);
    w.put(static_cast<std::uint8_t>(d.what));
    w.put_string(d.session);
    w.put(d.control_port);
    return std::move(w.bytes());
}

result<discovery> decode_discovery(std::span<const std::byte> datagram, std::string_view peer) {
    byte_reader r{datagram};
    if (r.get<std::uint32_t>() != discovery_magic) return protocol_error(errc::bad_magic, peer);
    discovery d;
    d.version = r.get<std::uint16_t>();
    const auto kind = r.get<std::uint8_t>();
    d.session = r.get_string();
    d.control_port = r.get<std::uint16_t>();
    if (r.failed) return protocol_error(errc::truncated, peer);
    if (kind != 1 && kind != 2) return protocol_error(errc::unknown_type, peer);
    d.what = static_cast<discovery::kind>(kind);
    return d;
}

}  // namespace kaclone::protocol
