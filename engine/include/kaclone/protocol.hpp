// The wire format: data frames, control messages and discovery datagrams. Encode and decode
// only, no I/O, so every byte layout is unit- and fuzz-testable.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <variant>
#include <vector>

#include <kaclone/error_category.hpp>
#include <kaclone/result.hpp>

namespace kaclone::protocol {

// The protocol version; both sides say theirs first and refuse a different one in words.
inline constexpr std::uint16_t version = 4;

enum class errc {
    bad_magic = 1,      // the bytes do not start with kaclone's magic: not a kaclone peer
    version_mismatch,   // the peer speaks another protocol version
    bad_header_check,   // a frame header's own checksum does not match: corrupted in flight
    oversized,          // a length field exceeds the protocol's bound (never allocated)
    unknown_type,       // a frame or message type this version does not know
    truncated,          // the input ends inside a header, a payload or a field
    bad_checksum,       // a frame payload's checksum does not match its header
    bad_field,          // a message field has a value that cannot be right
    bad_tag,            // a frame's keyed tag does not verify: altered or injected bytes
    unauthenticated,    // a peer did not prove that it holds the session key
};
const std::error_category& category() noexcept;
std::error_code make_error_code(errc e) noexcept;

// ---------------------------------------------------------------- data frames

// Frame header, 40 bytes little-endian:
//   0 u32 magic "KCF1"   4 u8 version   5 u8 type   6 u16 flags (bit 0: tagged)
//   8 u32 stream id     12 u32 payload bytes       16 u64 stream offset of the payload
//  24 u64 XXH3-64 of the payload                   32 u32 XXH32 of bytes 0..31, 36 u32 zero
// The header check catches a corrupted length before anything trusts it. On a session with a
// key every frame is tagged: 16 bytes of keyed tag (auth::frame_signer) follow its payload.
inline constexpr std::size_t frame_header_bytes = 40;
inline constexpr std::size_t frame_tag_bytes = 16;
// The largest payload a frame may announce; larger is errc::oversized.
inline constexpr std::uint32_t max_frame_payload_bytes = 16u << 20;
// The payload size the server uses unless told otherwise.
inline constexpr std::uint32_t default_frame_payload_bytes = 1u << 20;

enum class frame_type : std::uint8_t {
    data = 1,  // payload: stream bytes at `offset`
    end = 2,   // payload: end_payload (the stream is complete)
};

struct frame_header {
    frame_type type = frame_type::data;
    std::uint32_t stream = 0;
    std::uint32_t payload_bytes = 0;
    std::uint64_t offset = 0;
    std::uint64_t checksum = 0;
    bool tagged = false;  // a frame_tag_bytes tag follows the payload
    // Header, payload and tag: the frame's size on the wire.
    std::uint64_t frame_bytes() const noexcept {
        return frame_header_bytes + payload_bytes + (tagged ? frame_tag_bytes : 0);
    }
};

// The payload of the end frame: how many bytes the stream had and its digest.
inline constexpr std::size_t end_payload_bytes = 24;
struct stream_digest {
    std::array<std::byte, 16> bytes{};  // digest_state's XXH3-128, big-endian canonical
    bool operator==(const stream_digest&) const = default;
    std::string hex() const;
};
struct end_payload {
    std::uint64_t total_bytes = 0;
    stream_digest digest;
};

void encode_frame_header(const frame_header& h, std::span<std::byte, frame_header_bytes> out) noexcept;
// Decodes and checks a header (magic, version, header check, type, payload bound). `where`
// goes into the error ("stream 0 at offset 4194304").
result<frame_header> decode_frame_header(std::span<const std::byte, frame_header_bytes> in,
                                         std::string_view where);

std::uint64_t payload_checksum(std::span<const std::byte> payload) noexcept;

// Owner of one XXH3 streaming state (XXH3_state_t, kept out of this header), for
// payload_hasher and digest_state.
class xxh3_state {
public:
    xxh3_state();
    ~xxh3_state();
    xxh3_state(const xxh3_state&) = delete;
    xxh3_state& operator=(const xxh3_state&) = delete;
    void* get() const noexcept { return state_; }

private:
    void* state_;
};

// payload_checksum() of a payload that arrives in parts: fed each part while it is still in
// the cache (right after it was read), instead of the whole payload once it is complete,
// when most of it has left the cache.
class payload_hasher {
public:
    payload_hasher() noexcept { reset(); }
    void reset() noexcept;
    void add(std::span<const std::byte> part) noexcept;
    std::uint64_t checksum() const noexcept;  // of every part added since reset()

private:
    xxh3_state state_;
};

void encode_end_payload(const end_payload& p, std::span<std::byte, end_payload_bytes> out) noexcept;
end_payload decode_end_payload(std::span<const std::byte, end_payload_bytes> in) noexcept;

// Running digest of a stream: XXH3-128 over every data frame's offset, payload length and
// payload checksum (u64, u32, u64 little-endian), in stream order. Every node verifies each
// payload against its checksum before it adds the frame, so the digest covers every byte
// while the payload is read once, for the checksum (a digest over the bytes themselves was a
// second pass over every byte on every node).
class digest_state {
public:
    digest_state() noexcept;
    void add_frame(std::uint64_t offset, std::uint32_t payload_bytes, std::uint64_t checksum) noexcept;
    stream_digest digest() const noexcept;

private:
    xxh3_state state_;
};

// ---------------------------------------------------------------- control messages

// Control message: 12-byte header (u32 magic "KCC1", u16 version, u16 type, u32 body bytes)
// then the body. The header layout never changes between versions, so a peer of another
// version can always be told so in words.
inline constexpr std::size_t message_header_bytes = 12;
inline constexpr std::uint32_t max_message_body_bytes = 64u << 10;
// Except the status answer: the whole session's table (about 250 bytes a row with a failure's
// reason, 70 without; the server leaves out what does not fit). Only the operator's side,
// which asked for it, reads with this bound; every peer that has not proved anything is held
// to max_message_body_bytes.
inline constexpr std::uint32_t max_status_body_bytes = 16u << 20;

struct child_slot {
    std::uint32_t node = 0;
    std::string address;  // the only address a data connection for `node` may come from
    bool operator==(const child_slot&) const = default;
};

// node -> server: wants to join `session`; listens for its children on `data_port`.
struct hello {
    std::string session;
    std::string node_name;
    std::uint16_t data_port = 0;
    bool operator==(const hello&) const = default;
};
// server -> node: refused, with the reason in words (version, session running, ...).
struct refuse {
    std::string reason;
    bool operator==(const refuse&) const = default;
};
// server -> node: your place. The parent is the server (node 0) or another node.
struct assign {
    std::uint32_t node = 0;
    std::uint32_t parent_node = 0;
    std::string parent_address;
    std::uint16_t parent_port = 0;
    std::vector<child_slot> children;  // empty for a leaf; one in a chain; up to K in a tree
    std::uint64_t stream_bytes = 0;    // 0 when unknown (stdin)
    std::uint8_t relay_mode = 0;       // kaclone::relay_mode
    bool buffer_ahead = false;         // relay_config::buffer_ahead (the server runs --drop-slow)
    std::array<std::byte, 16> stream_nonce{};  // keys the frame tags (sessions with a key)
    bool operator==(const assign&) const = default;
};
// node -> server, once a second: what it stored, and its flow (relay_stats: what held its
// intake back, for --drop-slow and the stall rules). server -> node: the heartbeat, with what
// every node acknowledged in stored_bytes and nothing else.
struct progress {
    std::uint64_t stored_bytes = 0;
    std::uint64_t intake_wire_bytes = 0;
    std::uint64_t held_ns = 0;       // in all, holds in progress included
    std::uint64_t sink_busy_ns = 0;
    bool held = false;               // a hold is in progress
    bool operator==(const progress&) const = default;
};
// node -> server: finished, with what it stored or why it failed.
struct done {
    bool ok = false;
    std::uint64_t stored_bytes = 0;
    stream_digest digest;
    double seconds = 0;
    std::string message;  // the error, when !ok
    bool operator==(const done&) const = default;
};
// server -> node: you may exit.
struct release {
    bool operator==(const release&) const = default;
};
// child -> parent, on a data connection: who I am and where my stream resumes. A node that
// was given a new parent (its own died) resumes at the wire byte it has received up to (frames
// included: every node forwards the same bytes), tells what its subtree holds (`acked`, as in
// its acks) and whether it already has the whole stream (`complete`: nothing more is sent).
struct data_hello {
    std::string session;
    std::uint32_t node = 0;
    std::uint64_t resume_offset = 0;
    std::uint64_t acked = 0;
    bool complete = false;
    bool operator==(const data_hello&) const = default;
};
// parent -> child: accepted (the stream follows) or refused.
struct data_accept {
    bool ok = false;
    std::string reason;
    bool operator==(const data_accept&) const = default;
};

// operator (`kaclone go`) -> server: start `session` now with the nodes that have joined.
struct go {
    std::string session;
    bool operator==(const go&) const = default;
};
// server -> operator: started with `nodes` nodes, or not, with the reason.
struct go_answer {
    bool ok = false;
    std::uint32_t nodes = 0;
    std::string reason;
    bool operator==(const go_answer&) const = default;
};

// server -> node (after its hello or go), parent -> child (after its data hello): prove that
// you hold the session key with a proof over `nonce`. `keyed` false: the session runs open
// and no proof follows.
struct challenge {
    bool keyed = false;
    std::array<std::byte, 16> nonce{};
    bool operator==(const challenge&) const = default;
};
// The answer to a challenge, and the verifier's answer back (both sides prove): the prover's
// own nonce and HMAC-SHA256 under the key (auth::prove). An open challenge (not keyed) is
// answered with an empty proof, or with a refuse.
struct proof {
    std::array<std::byte, 16> nonce{};
    std::array<std::byte, 32> mac{};
    bool operator==(const proof&) const = default;
};

// What a node is doing, for the live view and `kaclone status`. Values are only appended.
enum class node_phase : std::uint8_t {
    waiting = 0,  // joined, waiting for the start or for its data connections
    layout,       // partitioning and formatting its disk (whole-machine clone)
    receiving,    // storing (and forwarding) the stream
    extracting,   // writing a filesystem or partition of the stream to its disk
    fixup,        // the post-clone fixups
    done,         // finished well
    failed,       // finished badly (the detail says why)
};
inline constexpr std::uint8_t node_phase_count = 7;
// "waiting", "layout", ... as the live view prints them.
std::string_view phase_name(node_phase p) noexcept;

// node -> server, when its phase changes: what it does now ("/home (stream 2 of 3)").
struct phase {
    node_phase what = node_phase::waiting;
    std::string detail;
    bool operator==(const phase&) const = default;
};
// node -> server: lines of its log, in order, each without its newline. A sender keeps one
// message's lines under max_log_bytes (a longer line is cut there).
inline constexpr std::size_t max_log_bytes = 32u << 10;
struct log_lines {
    std::vector<std::string> lines;
    bool operator==(const log_lines&) const = default;
};
// operator (`kaclone status`) -> server: how is `session` going?
struct status_ask {
    std::string session;
    bool operator==(const status_ask&) const = default;
};
// One node of a status answer.
struct status_row {
    std::uint32_t node = 0;  // 0 before the start (no place yet)
    std::string name, address, parent_address;
    node_phase what = node_phase::waiting;
    std::uint64_t stored_bytes = 0;
    std::uint64_t bytes_per_second = 0;  // over the last few seconds
    std::string detail;                  // the phase's detail, or why it failed
    bool operator==(const status_row&) const = default;
};
// server -> operator: the session's state in words ("waiting for nodes: 3 of 5", "running"),
// the bytes the nodes are expected to store (0: unknown) and one row per node.
struct status_answer {
    std::string state;
    std::uint64_t expected_bytes = 0;
    std::vector<status_row> rows;
    bool operator==(const status_answer&) const = default;
};

// server -> node, once its parent failed: take the stream from this parent (the nearest live
// ancestor; node 0 is the server) from the byte you have.
struct reparent {
    std::uint32_t parent_node = 0;
    std::string parent_address;
    std::uint16_t parent_port = 0;
    bool operator==(const reparent&) const = default;
};
// server -> node, once its child `lost` failed: these nodes (the lost one's children) take its
// place and will connect to resume; an empty list when it had none.
struct adopt {
    std::uint32_t lost = 0;
    std::vector<child_slot> children;
    bool operator==(const adopt&) const = default;
};
// node -> server: my data connection to `node` (my parent or a child) broke at stream offset
// `offset` (what I had stored), with the reason: a neighbour's report of a failure.
struct peer_lost {
    std::uint32_t node = 0;
    std::uint64_t offset = 0;
    std::string reason;
    bool operator==(const peer_lost&) const = default;
};

// Alternatives are only appended: a message's type number is its index + 1.
using message = std::variant<hello, refuse, assign, progress, done, release, data_hello, data_accept, go, go_answer,
                             challenge, proof, phase, log_lines, status_ask, status_answer, reparent, adopt, peer_lost>;

// Header + body of one message.
std::vector<std::byte> encode_message(const message& m);

struct message_header {
    std::uint16_t version = 0;
    std::uint16_t type = 0;
    std::uint32_t body_bytes = 0;
};
// Checks magic, version and the body bound `max_body` (errors name `peer`).
result<message_header> decode_message_header(std::span<const std::byte, message_header_bytes> in,
                                             std::string_view peer, std::uint32_t max_body = max_message_body_bytes);
result<message> decode_message_body(const message_header& h, std::span<const std::byte> body,
                                    std::string_view peer);

// ---------------------------------------------------------------- acks

// child -> parent on a data connection, cumulative: "everything below `offset` is stored here
// and in my whole subtree"; `complete` adds "and the end frame was verified everywhere".
// 16 bytes: u32 magic "KCA1", u32 flags (bit 0: complete), u64 offset.
inline constexpr std::size_t ack_bytes = 16;
struct ack {
    std::uint64_t offset = 0;
    bool complete = false;
    bool operator==(const ack&) const = default;
};
void encode_ack(const ack& a, std::span<std::byte, ack_bytes> out) noexcept;
result<ack> decode_ack(std::span<const std::byte, ack_bytes> in, std::string_view peer);

// ---------------------------------------------------------------- discovery

// UDP datagram: u32 magic "KCD1", u16 version, u8 kind (1 ask, 2 answer), string session
// (u16 length + bytes), u16 control port (0 in an ask).
inline constexpr std::uint16_t discovery_port = 7117;
struct discovery {
    enum class kind : std::uint8_t { ask = 1, answer = 2 };
    kind what = kind::ask;
    std::uint16_t version = protocol::version;
    std::string session;
    std::uint16_t control_port = 0;
    bool operator==(const discovery&) const = default;
};
std::vector<std::byte> encode_discovery(const discovery& d);
// Decodes any version's datagram (the version is returned, not checked).
result<discovery> decode_discovery(std::span<const std::byte> datagram, std::string_view peer);

}  // namespace kaclone::protocol

template <>
struct std::is_error_code_enum<kaclone::protocol::errc> : std::true_type {};
