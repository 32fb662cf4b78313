// Authentication of a session with a pre-shared key (`--key FILE`): key loading, HMAC-SHA256
// challenge-response proofs for control and data connections, and a keyed tag per frame, so
// that a peer without the key can neither join nor inject, and bytes injected on an
// established data connection are detected. OpenSSL stays out of this header.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include <kaclone/result.hpp>

namespace kaclone::auth {

inline constexpr std::size_t key_bytes = 32;
inline constexpr std::size_t nonce_bytes = 16;
inline constexpr std::size_t proof_bytes = 32;  // HMAC-SHA256
inline constexpr std::size_t tag_bytes = 16;    // Poly1305

using nonce = std::array<std::byte, nonce_bytes>;
using proof = std::array<std::byte, proof_bytes>;
using tag = std::array<std::byte, tag_bytes>;

// The session key: SHA-256 of the key file's bytes, so any secret of 16 bytes or more works
// (`head -c 32 /dev/urandom > key`, or a passphrase file).
struct session_key {
    std::array<std::byte, key_bytes> bytes{};
};

// Reads `path`. Refused (with the path and what to do) when the file is readable or writable
// by group or others, not a regular file, or shorter than 16 bytes.
result<session_key> load_key(const std::string& path);

// 16 random bytes from the system's CSPRNG.
nonce random_nonce();

// HMAC-SHA256 under `key` of `role` (what the proof is for, e.g. "control node"), `session`,
// then the two nonces: the verifier's challenge first, then the prover's own.
proof prove(const session_key& key, std::string_view role, std::string_view session, const nonce& challenge,
            const nonce& own);
// Compares in constant time.
bool proofs_equal(const proof& a, const proof& b) noexcept;

// Keyed per-frame tags of one stream: the tag of the frame at `offset` is Poly1305 over the
// frame's header and payload, under a one-time key HMAC-SHA256(key, "frame" || stream nonce ||
// offset). Offsets never repeat within a stream, so no one-time key is used twice.
class frame_signer {
public:
    frame_signer(const session_key& key, const nonce& stream_nonce) : key_(key), stream_nonce_(stream_nonce) {}
    tag sign(std::uint64_t offset, std::span<const std::byte> header, std::span<const std::byte> payload) const;
    bool verify(std::uint64_t offset, std::span<const std::byte> header, std::span<const std::byte> payload,
                std::span<const std::byte, tag_bytes> got) const;

private:
    session_key key_;
    nonce stream_nonce_;
};

}  // namespace kaclone::auth
