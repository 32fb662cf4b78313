// Session keys, proofs and frame tags (kaclone::auth).
#include <kaclone/auth.hpp>

#include <fstream>
#include <string>

#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

namespace kaclone::auth {
namespace {

class KeyFile : public ::testing::Test {
protected:
    void SetUp() override {
        char dir[] = "/tmp/kaclone-auth-test.XXXXXX";
        ASSERT_NE(::mkdtemp(dir), nullptr);
        dir_ = dir;
    }
    void TearDown() override {
        ::unlink(path_.c_str());
        ::rmdir(dir_.c_str());
    }
    void write(const std::string& bytes, mode_t mode) {
        path_ = dir_ + "/key";
        std::ofstream(path_, std::ios::binary) << bytes;
        ASSERT_EQ(::chmod(path_.c_str(), mode), 0);
    }
    std::string dir_, path_;
};

TEST_F(KeyFile, SameSecretGivesTheSameKey) {
    write("0123456789abcdef0123", 0600);

    auto a = load_key(path_);
    auto b = load_key(path_);

    ASSERT_TRUE(a.has_value()) << a.error().message();
    ASSERT_TRUE(b.has_value());
    EXPECT_EQ(a->bytes, b->bytes);
}

TEST_F(KeyFile, GroupOrWorldAccessIsRefused) {
    write("0123456789abcdef0123", 0640);

    auto key = load_key(path_);

    ASSERT_FALSE(key.has_value());
    EXPECT_EQ(key.error().code, std::make_error_code(std::errc::permission_denied));
    EXPECT_EQ(key.error().where, "--key " + path_ + " is accessible by group or others (mode 0640); run: chmod 600 " + path_);
}

TEST_F(KeyFile, ShortSecretIsRefused) {
    write("short", 0600);

    auto key = load_key(path_);

    ASSERT_FALSE(key.has_value());
    EXPECT_EQ(key.error().code, std::make_error_code(std::errc::invalid_argument));
    EXPECT_EQ(key.error().where,
              "--key " + path_ + " holds 5 bytes; a key needs at least 16 (e.g. head -c 32 /dev/urandom > " + path_ + ")");
}

TEST_F(KeyFile, MissingFileNamesThePath) {
    auto key = load_key(dir_ + "/none");

    ASSERT_FALSE(key.has_value());
    EXPECT_EQ(key.error().code, std::errc::no_such_file_or_directory);
    EXPECT_EQ(key.error().where, "--key " + dir_ + "/none");
}

session_key key_of(char fill) {
    session_key k;
    k.bytes.fill(std::byte(fill));
    return k;
}

TEST(Proof, DependsOnKeyRoleSessionAndBothNonces) {
    const nonce a = random_nonce(), b = random_nonce();
    const proof p = prove(key_of(1), "control node", "lab", a, b);

    EXPECT_TRUE(proofs_equal(p, prove(key_of(1), "control node", "lab", a, b)));
    EXPECT_FALSE(proofs_equal(p, prove(key_of(2), "control node", "lab", a, b)));
    EXPECT_FALSE(proofs_equal(p, prove(key_of(1), "control server", "lab", a, b)));
    EXPECT_FALSE(proofs_equal(p, prove(key_of(1), "control node", "lab2", a, b)));
    EXPECT_FALSE(proofs_equal(p, prove(key_of(1), "control node", "lab", b, a)));
}

TEST(Proof, RoleAndSessionDoNotRunTogether) {
    const nonce a{}, b{};

    EXPECT_FALSE(proofs_equal(prove(key_of(1), "ab", "c", a, b), prove(key_of(1), "a", "bc", a, b)));
}

TEST(FrameSigner, VerifiesItsOwnTagAndRejectsAnyChange) {
    const frame_signer signer{key_of(7), random_nonce()};
    std::array<std::byte, 40> header{};
    std::vector<std::byte> payload(4096, std::byte{0x33});
    const tag t = signer.sign(1 << 20, header, payload);

    EXPECT_TRUE(signer.verify(1 << 20, header, payload, t));
    EXPECT_FALSE(signer.verify(2 << 20, header, payload, t));  // replayed at another offset
    payload[100] ^= std::byte{1};
    EXPECT_FALSE(signer.verify(1 << 20, header, payload, t));
    payload[100] ^= std::byte{1};
    header[12] ^= std::byte{1};
    EXPECT_FALSE(signer.verify(1 << 20, header, payload, t));
}

TEST(FrameSigner, OtherStreamNonceOtherTags) {
    const nonce n1 = random_nonce(), n2 = random_nonce();
    std::array<std::byte, 40> header{};
    const std::vector<std::byte> payload(100, std::byte{1});

    EXPECT_NE(frame_signer(key_of(7), n1).sign(0, header, payload), frame_signer(key_of(7), n2).sign(0, header, payload));
}

}  // namespace
}  // namespace kaclone::auth
