// Session keys, HMAC-SHA256 proofs and Poly1305 frame tags (OpenSSL libcrypto).
#include <kaclone/auth.hpp>

#include <cstring>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <kaclone/assert.hpp>
#include <kaclone/unique_fd.hpp>

namespace kaclone::auth {
namespace {

using hmac_input = std::span<const std::byte>;

// HMAC-SHA256 of the concatenation of `parts`.
proof hmac(std::span<const std::byte> key, std::initializer_list<hmac_input> parts) {
    std::string joined;
    for (const auto& p : parts) joined.append(reinterpret_cast<const char*>(p.data()), p.size());
    proof out{};
    unsigned len = 0;
    const auto* r = HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
                         reinterpret_cast<const unsigned char*>(joined.data()), joined.size(),
                         reinterpret_cast<unsigned char*>(out.data()), &len);
    KACLONE_ASSERT(r != nullptr && len == proof_bytes);
    return out;
}

hmac_input text(std::string_view s) { return std::as_bytes(std::span(s.data(), s.size())); }

tag poly1305(const proof& one_time_key, std::span<const std::byte> header, std::span<const std::byte> payload) {
    tag out{};
    EVP_PKEY* pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_POLY1305, nullptr,
                                                  reinterpret_cast<const unsigned char*>(one_time_key.data()), one_time_key.size());
    KACLONE_ASSERT(pkey != nullptr);
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    KACLONE_ASSERT(ctx != nullptr);
    std::size_t len = out.size();
    const bool ok = EVP_DigestSignInit(ctx, nullptr, nullptr, nullptr, pkey) == 1 &&
                    EVP_DigestSignUpdate(ctx, header.data(), header.size()) == 1 &&
                    EVP_DigestSignUpdate(ctx, payload.data(), payload.size()) == 1 &&
                    EVP_DigestSignFinal(ctx, reinterpret_cast<unsigned char*>(out.data()), &len) == 1;
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(pkey);
    KACLONE_ASSERT(ok && len == tag_bytes);
    return out;
}

}  // namespace

result<session_key> load_key(const std::string& path) {
    auto fd = open_fd(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (!fd) return error{fd.error().code, "--key " + path};
    struct stat st{};
    if (::fstat(fd->get(), &st) != 0) return last_sys_error("--key " + path);
    if (!S_ISREG(st.st_mode))
        return error{std::make_error_code(std::errc::invalid_argument), "--key " + path + " is not a regular file"};
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        return error{std::make_error_code(std::errc::permission_denied),
                     "--key " + path + " is accessible by group or others (mode " + mode + "); run: chmod 600 " + path};
    }
    std::string secret;
    std::array<char, 4096> chunk{};
    for (;;) {
        const ssize_t n = ::read(fd->get(), chunk.data(), chunk.size());
        if (n < 0) return last_sys_error("--key " + path);
        if (n == 0) break;
        secret.append(chunk.data(), static_cast<std::size_t>(n));
        if (secret.size() > (1u << 20))
            return error{std::make_error_code(std::errc::file_too_large), "--key " + path + " is larger than 1 MiB"};
    }
    if (secret.size() < 16)
        return error{std::make_error_code(std::errc::invalid_argument),
                     "--key " + path + " holds " + std::to_string(secret.size()) +
                         " bytes; a key needs at least 16 (e.g. head -c 32 /dev/urandom > " + path + ")"};
    session_key key;
    SHA256(reinterpret_cast<const unsigned char*>(secret.data()), secret.size(), reinterpret_cast<unsigned char*>(key.bytes.data()));
    OPENSSL_cleanse(secret.data(), secret.size());
    return key;
}

nonce random_nonce() {
    nonce n{};
    KACLONE_ASSERT(RAND_bytes(reinterpret_cast<unsigned char*>(n.data()), static_cast<int>(n.size())) == 1);
    return n;
}

proof prove(const session_key& key, std::string_view role, std::string_view session, const nonce& challenge,
            const nonce& own) {
    // Lengths first, so that no two (role, session) pairs concatenate to the same bytes.
    const std::uint32_t lengths[2] = {static_cast<std::uint32_t>(role.size()), static_cast<std::uint32_t>(session.size())};
    return hmac(key.bytes, {std::as_bytes(std::span(lengths)), text(role), text(session), challenge, own});
}

bool proofs_equal(const proof& a, const proof& b) noexcept { return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0; }

tag frame_signer::sign(std::uint64_t offset, std::span<const std::byte> header, std::span<const std::byte> payload) const {
    const std::uint64_t at[1] = {offset};
    const proof one_time = hmac(key_.bytes, {text("frame"), stream_nonce_, std::as_bytes(std::span(at))});
    return poly1305(one_time, header, payload);
}

bool frame_signer::verify(std::uint64_t offset, std::span<const std::byte> header, std::span<const std::byte> payload,
                          std::span<const std::byte, tag_bytes> got) const {
    const tag want = sign(offset, header, payload);
    return CRYPTO_memcmp(want.data(), got.data(), tag_bytes) == 0;
}

}  // namespace kaclone::auth
