// The manifest's text form (kaclone::manifest).
#include <kaclone/manifest.hpp>

#include <gtest/gtest.h>

namespace kaclone::manifest {
namespace {

manifest sample() {
    manifest m;
    m.session = "lab 3";
    m.desc = "label: dos\nlinux 20480 fs=ext4 mount=/\n\nlinux fill fs=xfs mount=/data\n";
    stream_entry root{stream_kind::tree, 1, "1", "/", "ext4", "root fs", "5c1f", 0, 2147483648, {"/tmp", "/var/cache 100%"}};
    stream_entry data{stream_kind::tree, 2, "2", "/data", "xfs", "", "9e2a", 0, 0, {}};
    stream_entry raw{stream_kind::raw, 3, "3", "", "", "", "", 1048576, 0, {}};
    stream_entry boot{stream_kind::boot_code, 4, "", "", "", "", "", 446, 0, {}};
    m.streams = {root, data, raw, boot};
    m.fixup = {"grub", "-v --with=ata_piix"};
    m.hostnames = "# lab 3\n52:54:00:12:34:01 node01\n";
    return m;
}

TEST(Manifest, EncodesTheDocumentedText) {
    const std::string text = encode(sample());

    EXPECT_EQ(text,
              "kaclone-manifest 1\n"
              "session lab%203\n"
              "desc label:%20dos\n"
              "desc linux%2020480%20fs%3Dext4%20mount%3D/\n"
              "desc \n"
              "desc linux%20fill%20fs%3Dxfs%20mount%3D/data\n"
              "stream 1 tree partition=1 mount=/ fs=ext4 label=root%20fs uuid=5c1f estimate=2147483648 exclude=/tmp "
              "exclude=/var/cache%20100%25\n"
              "stream 2 tree partition=2 mount=/data fs=xfs uuid=9e2a\n"
              "stream 3 raw partition=3 bytes=1048576\n"
              "stream 4 boot-code bytes=446\n"
              "fixup bootloader=grub initrd-args=-v%20--with%3Data_piix\n"
              "hostnames #%20lab%203\n"
              "hostnames 52:54:00:12:34:01%20node01\n"
              "end\n");
}

TEST(Manifest, RoundTrips) {
    const manifest m = sample();

    auto back = decode(encode(m), "manifest");

    ASSERT_TRUE(back.has_value()) << back.error().message();
    EXPECT_EQ(*back, m);
}

TEST(Manifest, IgnoresKeysOfALaterMinorVersion) {
    auto m = decode("kaclone-manifest 1\nstream 1 tree mount=/ compression=zstd\nend\n", "m");

    ASSERT_TRUE(m.has_value()) << m.error().message();
    EXPECT_EQ(m->streams.at(0).mount, "/");
}

struct bad_case {
    const char* text;
    errc code;
    const char* where;
};

class ManifestRefuses : public ::testing::TestWithParam<bad_case> {};

TEST_P(ManifestRefuses, WithTheErrorAndItsLine) {
    auto m = decode(GetParam().text, "m");

    ASSERT_FALSE(m.has_value());
    EXPECT_EQ(m.error().code, GetParam().code);
    EXPECT_EQ(m.error().where, GetParam().where);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ManifestRefuses,
    ::testing::Values(bad_case{"", errc::bad_header, "m:1"},
                      bad_case{"tar file\n", errc::bad_header, "m:1"},
                      bad_case{"kaclone-manifest 2\nend\n", errc::other_version, "m:1"},
                      bad_case{"kaclone-manifest 1\nsession a\n", errc::no_end, "m:2"},
                      bad_case{"kaclone-manifest 1\nfrobnicate\nend\n", errc::bad_line, "m:2"},
                      bad_case{"kaclone-manifest 1\nsession a%2\nend\n", errc::bad_line, "m:2"},
                      bad_case{"kaclone-manifest 1\nstream 2 tree mount=/\nend\n", errc::bad_stream, "m:2"},
                      bad_case{"kaclone-manifest 1\nstream 1 disk mount=/\nend\n", errc::bad_stream, "m:2"},
                      bad_case{"kaclone-manifest 1\nstream 1 tree mount=data\nend\n", errc::bad_stream, "m:2"},
                      bad_case{"kaclone-manifest 1\nstream 1 raw bytes=12x\nend\n", errc::bad_stream, "m:2"},
                      bad_case{"kaclone-manifest 1\nstream 1 boot-code bytes=512\nend\n", errc::bad_stream, "m:2"},
                      bad_case{"kaclone-manifest 1\nstream 1 tree mount\nend\n", errc::bad_line, "m:2"}));

}  // namespace
}  // namespace kaclone::manifest
