// The image module: trees through writer -> stream -> extractor, hostile streams, raw copies
// with holes, boot code. Root-only cases (device nodes, owners, capabilities, ACLs, mount
// points) skip with the reason when not run as root.
#include <kaclone/image.hpp>


#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <kaclone/unique_fd.hpp>

#include <gtest/gtest.h>

namespace kaclone::image {
namespace {

namespace fs = std::filesystem;

// A private temp directory with `src`, `dst` and `outside`, removed at the end.
class ImageTree : public ::testing::Test {
protected:
    void SetUp() override {
        std::string pattern = (fs::temp_directory_path() / "kaclone-image.XXXXXX").string();
        ASSERT_NE(::mkdtemp(pattern.data()), nullptr) << std::strerror(errno);
        base_ = pattern;
        src_ = base_ / "src";
        dst_ = base_ / "dst";
        outside_ = base_ / "outside";
        fs::create_directories(src_);
        fs::create_directories(dst_);
        fs::create_directories(outside_);
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(base_, ec);
    }

    // Writes `src_` into a memfd and extracts that into `dst_`.
    void round_trip(const write_options& wopts = {}) {
        unique_fd stream{::memfd_create("stream", MFD_CLOEXEC)};
        ASSERT_TRUE(stream);
        auto written = write_tree(src_, wopts, stream.get(), wstats_);
        ASSERT_TRUE(written) << written.error().message();
        ASSERT_EQ(::lseek(stream.get(), 0, SEEK_SET), 0);
        auto extracted = extract_tree(stream.get(), dst_, {}, xstats_);
        ASSERT_TRUE(extracted) << extracted.error().message();
    }

    static void write_file(const fs::path& p, const std::string& content) {
        std::ofstream(p, std::ios::binary) << content;
    }
    static std::string read_file(const fs::path& p) {
        std::ifstream in(p, std::ios::binary);
        return {std::istreambuf_iterator<char>(in), {}};
    }
    static struct stat lstat_of(const fs::path& p) {
        struct stat st {};
        EXPECT_EQ(::lstat(p.c_str(), &st), 0) << p << ": " << std::strerror(errno);
        return st;
    }
    static void set_mtime(const fs::path& p, time_t sec, long nsec) {
        const timespec times[2] = {{sec, nsec}, {sec, nsec}};
        ASSERT_EQ(::utimensat(AT_FDCWD, p.c_str(), times, AT_SYMLINK_NOFOLLOW), 0) << std::strerror(errno);
    }

    fs::path base_, src_, dst_, outside_;
    write_stats wstats_;
    extract_stats xstats_;
};

TEST_F(ImageTree, RoundTripKeepsFilesDirsModesAndTimes) {
    fs::create_directories(src_ / "a/b/c");
    write_file(src_ / "a/b/c/file", "hello\n");
    write_file(src_ / "setuid", "#!/bin/sh\n");
    ASSERT_EQ(::chmod((src_ / "setuid").c_str(), 04755), 0);
    fs::create_directory(src_ / "sticky");
    ASSERT_EQ(::chmod((src_ / "sticky").c_str(), 01777), 0);
    set_mtime(src_ / "a/b/c/file", 1700000000, 123456789);
    set_mtime(src_ / "a/b", 1600000000, 987654321);
    ASSERT_EQ(::chmod(src_.c_str(), 0751), 0);
    write_file(src_ / "gr\xc3\xbc\xc3\x9f" "e-\xff-not-utf8", "bytes");
    write_file(src_ / std::string(200, 'n'), "long");

    round_trip();

    EXPECT_EQ(read_file(dst_ / "a/b/c/file"), "hello\n");
    EXPECT_EQ(lstat_of(dst_ / "setuid").st_mode, S_IFREG | 04755);
    EXPECT_EQ(lstat_of(dst_ / "sticky").st_mode, S_IFDIR | 01777);
    const auto f = lstat_of(dst_ / "a/b/c/file");
    EXPECT_EQ(f.st_mtim.tv_sec, 1700000000);
    EXPECT_EQ(f.st_mtim.tv_nsec, 123456789);
    const auto root = lstat_of(dst_);
    EXPECT_EQ(root.st_mode, S_IFDIR | 0751);
    EXPECT_EQ(root.st_mtim.tv_sec, lstat_of(src_).st_mtim.tv_sec);
    EXPECT_EQ(root.st_mtim.tv_nsec, lstat_of(src_).st_mtim.tv_nsec);
    const auto d = lstat_of(dst_ / "a/b");
    EXPECT_EQ(d.st_mtim.tv_sec, 1600000000);
    EXPECT_EQ(d.st_mtim.tv_nsec, 987654321);
    EXPECT_EQ(read_file(dst_ / "gr\xc3\xbc\xc3\x9f" "e-\xff-not-utf8"), "bytes");
    EXPECT_EQ(read_file(dst_ / std::string(200, 'n')), "long");
    EXPECT_EQ(wstats_.warnings, 0u);
    EXPECT_EQ(xstats_.warnings, 0u);
    EXPECT_EQ(xstats_.refused, 0u);
    EXPECT_EQ(xstats_.failed, 0u);
    EXPECT_EQ(xstats_.entries, wstats_.entries);
}

TEST_F(ImageTree, RoundTripKeepsHardlinksSymlinksAndFifos) {
    fs::create_directories(src_ / "one");
    fs::create_directories(src_ / "two");
    write_file(src_ / "one/h1", "shared");
    fs::create_hard_link(src_ / "one/h1", src_ / "two/h2");
    fs::create_symlink("one/h1", src_ / "rel");
    fs::create_symlink("/etc/passwd", src_ / "abs");
    ASSERT_EQ(::mkfifo((src_ / "fifo").c_str(), 0640), 0);

    round_trip();

    const auto h1 = lstat_of(dst_ / "one/h1"), h2 = lstat_of(dst_ / "two/h2");
    EXPECT_EQ(h1.st_ino, h2.st_ino);
    EXPECT_EQ(h1.st_nlink, 2u);
    EXPECT_EQ(read_file(dst_ / "two/h2"), "shared");
    EXPECT_EQ(fs::read_symlink(dst_ / "rel"), "one/h1");
    EXPECT_EQ(fs::read_symlink(dst_ / "abs"), "/etc/passwd");
    EXPECT_EQ(lstat_of(dst_ / "fifo").st_mode, S_IFIFO | 0640);
}

TEST_F(ImageTree, SparseFileKeepsItsHoles) {
    const auto path = src_ / "sparse";
    {
        unique_fd fd{::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644)};
        ASSERT_TRUE(fd);
        ASSERT_EQ(::ftruncate(fd.get(), off_t{1} << 30), 0);
        const std::string block(4096, 'x');
        for (const off_t at : {off_t{0}, off_t{512} << 20, (off_t{1} << 30) - 4096})
            ASSERT_EQ(::pwrite(fd.get(), block.data(), block.size(), at), 4096);
    }

    round_trip();

    const auto st = lstat_of(dst_ / "sparse");
    EXPECT_EQ(st.st_size, off_t{1} << 30);
    EXPECT_LT(st.st_blocks * 512, 1 << 20);
    unique_fd fd{::open((dst_ / "sparse").c_str(), O_RDONLY | O_CLOEXEC)};
    char c = 0;
    ASSERT_EQ(::pread(fd.get(), &c, 1, (off_t{512} << 20) + 100), 1);
    EXPECT_EQ(c, 'x');
    ASSERT_EQ(::pread(fd.get(), &c, 1, (off_t{256} << 20)), 1);
    EXPECT_EQ(c, 0);
    ASSERT_EQ(::pread(fd.get(), &c, 1, (off_t{1} << 30) - 1), 1);
    EXPECT_EQ(c, 'x');
    EXPECT_EQ(xstats_.data_bytes, 3u * 4096);
}

TEST_F(ImageTree, FileThatIsOneHoleStaysOne) {
    {
        unique_fd fd{::open((src_ / "hole").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644)};
        ASSERT_TRUE(fd);
        ASSERT_EQ(::ftruncate(fd.get(), off_t{64} << 20), 0);
    }
    write_file(src_ / "dense", std::string(10000, 'd'));

    round_trip();

    const auto st = lstat_of(dst_ / "hole");
    EXPECT_EQ(st.st_size, off_t{64} << 20);
    EXPECT_EQ(st.st_blocks, 0);
    EXPECT_EQ(read_file(dst_ / "dense"), std::string(10000, 'd'));
    EXPECT_EQ(wstats_.data_bytes, 10000u);
    EXPECT_EQ(wstats_.warnings, 0u);
}

TEST_F(ImageTree, ExcludedDirIsKeptEmptyWithItsMode) {
    fs::create_directories(src_ / "tmp/deep");
    write_file(src_ / "tmp/secret", "x");
    ASSERT_EQ(::chmod((src_ / "tmp").c_str(), 01777), 0);
    write_options wopts;
    wopts.excludes = {"tmp"};

    round_trip(wopts);

    EXPECT_EQ(lstat_of(dst_ / "tmp").st_mode, S_IFDIR | 01777);
    EXPECT_TRUE(fs::is_empty(dst_ / "tmp"));
    EXPECT_EQ(wstats_.excluded_dirs, 1u);
}

TEST_F(ImageTree, ExistingDirectoriesGetTheStreamsAttributes) {
    fs::create_directory(src_ / "lost+found");
    ASSERT_EQ(::chmod((src_ / "lost+found").c_str(), 0750), 0);
    set_mtime(src_ / "lost+found", 1500000000, 5);
    fs::create_directory(dst_ / "lost+found");
    ASSERT_EQ(::chmod((dst_ / "lost+found").c_str(), 0700), 0);

    round_trip();

    const auto st = lstat_of(dst_ / "lost+found");
    EXPECT_EQ(st.st_mode, S_IFDIR | 0750);
    EXPECT_EQ(st.st_mtim.tv_sec, 1500000000);
    EXPECT_EQ(st.st_mtim.tv_nsec, 5);
}

TEST_F(ImageTree, ExcludeOutsideTheTreeIsAnError) {
    unique_fd stream{::memfd_create("stream", MFD_CLOEXEC)};
    write_options wopts;
    wopts.excludes = {outside_};

    auto written = write_tree(src_, wopts, stream.get(), wstats_);

    ASSERT_FALSE(written);
    EXPECT_EQ(written.error().code, errc::bad_exclude);
    EXPECT_EQ(written.error().where, outside_.string() + " (not inside " + fs::canonical(src_).string() + ")");
}

TEST_F(ImageTree, MissingExcludeIsAnError) {
    unique_fd stream{::memfd_create("stream", MFD_CLOEXEC)};
    write_options wopts;
    wopts.excludes = {"no-such-dir"};

    auto written = write_tree(src_, wopts, stream.get(), wstats_);

    ASSERT_FALSE(written);
    EXPECT_EQ(written.error().code, errc::bad_exclude);
    EXPECT_EQ(written.error().where, "no-such-dir (no directory " + (src_ / "no-such-dir").string() + ")");
    EXPECT_EQ(::lseek(stream.get(), 0, SEEK_END), 0);
}

TEST_F(ImageTree, SocketsAreSkippedAndCounted) {
    const auto path = (src_ / "sock").string();
    unique_fd sock{::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)};
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof(addr.sun_path)) GTEST_SKIP() << "temp path too long for a unix socket";
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    ASSERT_EQ(::bind(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << std::strerror(errno);
    write_file(src_ / "file", "f");

    round_trip();

    EXPECT_EQ(wstats_.sockets_skipped, 1u);
    EXPECT_FALSE(fs::exists(fs::symlink_status(dst_ / "sock")));
    EXPECT_TRUE(fs::exists(dst_ / "file"));
}

TEST_F(ImageTree, UserXattrsRoundTrip) {
    write_file(src_ / "file", "f");
    write_file(dst_ / "probe", "p");
    const std::string value = "some value";
    if (::setxattr((src_ / "file").c_str(), "user.kaclone", value.data(), value.size(), 0) != 0 ||
        ::setxattr((dst_ / "probe").c_str(), "user.kaclone", value.data(), value.size(), 0) != 0)
        GTEST_SKIP() << "the temp filesystem refuses user xattrs: " << std::strerror(errno);
    fs::remove(dst_ / "probe");

    round_trip();

    char got[64] = {};
    const ssize_t n = ::getxattr((dst_ / "file").c_str(), "user.kaclone", got, sizeof(got));
    ASSERT_EQ(n, static_cast<ssize_t>(value.size())) << std::strerror(errno);
    EXPECT_EQ(std::string(got, static_cast<std::size_t>(n)), value);
    EXPECT_EQ(xstats_.warnings, 0u);
}

// Hostile streams, built here with libarchive the way an attacker would.
class HostileStream : public ImageTree {
protected:
    struct spec {
        std::string name;
        mode_t type = AE_IFREG;
        std::string content;   // file data
        std::string symlink;   // target of a symlink
        std::string hardlink;  // target of a hardlink
    };
    static spec file(std::string name, std::string content) { return {std::move(name), AE_IFREG, std::move(content), {}, {}}; }
    static spec symlink(std::string name, std::string target) { return {std::move(name), AE_IFLNK, {}, std::move(target), {}}; }
    static spec hardlink(std::string name, std::string target) { return {std::move(name), AE_IFREG, {}, {}, std::move(target)}; }

    // The tar stream of `entries`, in a memfd positioned at 0.
    static unique_fd make_stream(const std::vector<spec>& entries) {
        unique_fd fd{::memfd_create("hostile", MFD_CLOEXEC)};
        archive* a = archive_write_new();
        archive_write_set_format_pax(a);
        archive_write_open_fd(a, fd.get());
        for (const auto& s : entries) {
            archive_entry* e = archive_entry_new();
            archive_entry_set_pathname(e, s.name.c_str());
            archive_entry_set_filetype(e, s.type);
            archive_entry_set_perm(e, s.type == AE_IFDIR ? 0755 : 0644);
            if (!s.symlink.empty()) archive_entry_set_symlink(e, s.symlink.c_str());
            if (!s.hardlink.empty()) archive_entry_set_hardlink(e, s.hardlink.c_str());
            archive_entry_set_size(e, static_cast<la_int64_t>(s.content.size()));
            archive_write_header(a, e);
            if (!s.content.empty()) archive_write_data(a, s.content.data(), s.content.size());
            archive_entry_free(e);
        }
        archive_write_close(a);
        archive_write_free(a);
        ::lseek(fd.get(), 0, SEEK_SET);
        return fd;
    }

    result<void> extract(const std::vector<spec>& entries) {
        const unique_fd stream = make_stream(entries);
        return extract_tree(stream.get(), dst_, {}, xstats_);
    }
};

TEST_F(HostileStream, AbsolutePathIsRefused) {
    const std::string target = (outside_ / "escape").string();

    auto r = extract({file(target, "evil"), file("good", "ok")});

    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, errc::refused_entries);
    EXPECT_EQ(r.error().where, "1 entry, the first " + target + " (an absolute path)");
    EXPECT_FALSE(fs::exists(target));
    EXPECT_EQ(read_file(dst_ / "good"), "ok");
    EXPECT_EQ(xstats_.refused, 1u);
}

TEST_F(HostileStream, DotDotIsRefused) {
    auto r = extract({file("../outside/escape", "evil")});

    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, errc::refused_entries);
    EXPECT_EQ(r.error().where, "1 entry, the first ../outside/escape (a '..' component)");
    EXPECT_FALSE(fs::exists(outside_ / "escape"));
}

TEST_F(HostileStream, WriteThroughEscapingSymlinkIsRefused) {
    auto r = extract({symlink("a", outside_.string()), file("a/escape", "evil")});

    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, errc::refused_entries);
    EXPECT_EQ(r.error().where, "1 entry, the first a/escape (its path goes through the symlink a)");
    EXPECT_FALSE(fs::exists(outside_ / "escape"));
    EXPECT_EQ(fs::read_symlink(dst_ / "a"), outside_);
}

TEST_F(HostileStream, HardlinkOutsideIsRefused) {
    write_file(outside_ / "shadow", "secret");
    const std::string target = (outside_ / "shadow").string();

    auto r = extract({hardlink("h", target)});

    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, errc::refused_entries);
    EXPECT_EQ(r.error().where, "1 entry, the first h (its hardlink target " + target + " has an absolute path)");
    EXPECT_FALSE(fs::exists(fs::symlink_status(dst_ / "h")));
    EXPECT_EQ(lstat_of(outside_ / "shadow").st_nlink, 1u);
}

TEST_F(HostileStream, DirectoryReplacedBySymlinkIsNotFollowed) {
    ASSERT_EQ(::chmod(outside_.c_str(), 0700), 0);
    set_mtime(outside_, 1400000000, 0);

    // "a" is checked as a real directory for a/h (refused for its target), then replaced.
    auto r = extract({{"a", AE_IFDIR, {}, {}, {}}, hardlink("a/h", "/etc/shadow"), symlink("a", outside_.string()),
                      file("a/escape", "evil")});

    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, errc::refused_entries);
    EXPECT_EQ(r.error().where, "2 entries, the first a/h (its hardlink target /etc/shadow has an absolute path)");
    EXPECT_EQ(xstats_.refused, 2u);
    EXPECT_FALSE(fs::exists(outside_ / "escape"));
    EXPECT_EQ(fs::read_symlink(dst_ / "a"), outside_);
    EXPECT_EQ(lstat_of(outside_).st_mode, S_IFDIR | 0700);
    EXPECT_EQ(lstat_of(outside_).st_mtim.tv_sec, 1400000000);
}

TEST_F(HostileStream, DirectoryOverASymlinkDoesNotTouchItsTarget) {
    ASSERT_EQ(::chmod(outside_.c_str(), 0700), 0);
    set_mtime(outside_, 1400000000, 0);

    auto r = extract({symlink("a", outside_.string()), {"a", AE_IFDIR, {}, {}, {}}, file("a/inside", "ok")});

    ASSERT_TRUE(r) << r.error().message();
    EXPECT_TRUE(fs::is_directory(fs::symlink_status(dst_ / "a")));
    EXPECT_EQ(read_file(dst_ / "a/inside"), "ok");
    EXPECT_TRUE(fs::is_empty(outside_));
    EXPECT_EQ(lstat_of(outside_).st_mode, S_IFDIR | 0700);
    EXPECT_EQ(lstat_of(outside_).st_mtim.tv_sec, 1400000000);
}

TEST_F(HostileStream, SymlinkBeyondPathMaxIsRefused) {
    std::string deep;
    for (int i = 0; i < 50; ++i) deep += std::string(100, static_cast<char>('a' + i % 26)) + "/";  // 5050 bytes

    auto r = extract({file(deep + "leaf", "deep"), symlink(deep + "x", outside_.string()), file(deep + "x/escape", "evil")});

    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, errc::refused_entries);
    EXPECT_EQ(r.error().where, "1 entry, the first " + deep + "x/escape (its path goes through the symlink " + deep + "x)");
    EXPECT_FALSE(fs::exists(outside_ / "escape"));
    EXPECT_EQ(xstats_.entries, 2u);
}

// One ustar header block (and its data) by hand: libarchive's writer never gives a hardlink
// data, and its reader takes a hardlink's data only after a pax header.
std::string ustar_entry(const std::string& name, char type, const std::string& link, const std::string& data) {
    std::string h(512, '\0');
    auto put = [&h](std::size_t at, const std::string& v) { h.replace(at, v.size(), v); };
    auto octal = [](std::size_t value, int width) {
        char buf[16];
        std::snprintf(buf, sizeof(buf), "%0*zo", width - 1, value);
        return std::string(buf);
    };
    put(0, name);
    put(100, octal(0644, 8));
    put(108, octal(0, 8));
    put(116, octal(0, 8));
    put(124, octal(data.size(), 12));
    put(136, octal(0, 12));
    put(148, std::string(8, ' '));
    h[156] = type;
    put(157, link);
    put(257, std::string("ustar\0" "00", 8));
    unsigned sum = 0;
    for (const char c : h) sum += static_cast<unsigned char>(c);
    put(148, octal(sum, 7));
    std::string padded = data;
    padded.resize((data.size() + 511) / 512 * 512, '\0');
    return h + padded;
}

TEST_F(HostileStream, HardlinkWithDataOntoASymlinkIsRefused) {
    write_file(outside_ / "victim", "untouched");
    const std::string tar = ustar_entry("s", '2', (outside_ / "victim").string(), "") + ustar_entry("PaxHeader/h", 'x', "", "10 path=h\n") +
                            ustar_entry("h", '1', "s", "evil") +
                            std::string(1024, '\0');
    unique_fd stream{::memfd_create("hostile", MFD_CLOEXEC)};
    ASSERT_EQ(::write(stream.get(), tar.data(), tar.size()), static_cast<ssize_t>(tar.size()));
    ::lseek(stream.get(), 0, SEEK_SET);

    auto r = extract_tree(stream.get(), dst_, {}, xstats_);

    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().where, "1 entry, the first h (its hardlink target s has a symlink as its last component, and the entry carries data)");
    EXPECT_EQ(read_file(outside_ / "victim"), "untouched");
}

TEST_F(HostileStream, TruncatedStreamFails) {
    unique_fd full = make_stream({file("file", std::string(100000, 'x'))});
    const off_t size = ::lseek(full.get(), 0, SEEK_END);
    ASSERT_EQ(::ftruncate(full.get(), size / 2), 0);
    ::lseek(full.get(), 0, SEEK_SET);

    auto r = extract_tree(full.get(), dst_, {}, xstats_);

    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, errc::archive_failed);
}

TEST_F(HostileStream, RandomBytesFail) {
    unique_fd fd{::memfd_create("random", MFD_CLOEXEC)};
    std::mt19937 gen(6);
    std::vector<unsigned char> bytes(65536);
    for (auto& b : bytes) b = static_cast<unsigned char>(gen());
    ASSERT_EQ(::write(fd.get(), bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
    ::lseek(fd.get(), 0, SEEK_SET);

    auto r = extract_tree(fd.get(), dst_, {}, xstats_);

    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, errc::archive_failed);
    EXPECT_TRUE(fs::is_empty(dst_));
}

// Raw copies and boot code.
class ImageRaw : public ImageTree {};

TEST_F(ImageRaw, ZeroBlocksBecomeHolesInFiles) {
    std::string data(3 * (1 << 20) + 1000, '\0');
    for (std::size_t i = 0; i < 4096; ++i) data[(1 << 20) + i] = static_cast<char>('a' + i % 26);
    data.back() = 'z';
    write_file(src_ / "part", data);
    unique_fd in{::open((src_ / "part").c_str(), O_RDONLY | O_CLOEXEC)};
    unique_fd out{::open((dst_ / "copy").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644)};

    auto copied = copy_raw(in.get(), out.get(), zero_blocks::hole);

    ASSERT_TRUE(copied) << copied.error().message();
    EXPECT_EQ(copied->bytes, data.size());
    EXPECT_EQ(read_file(dst_ / "copy"), data);
    EXPECT_LE(lstat_of(dst_ / "copy").st_blocks * 512, 64 << 10);
}

TEST_F(ImageRaw, WriteModeWritesZeros) {
    const std::string data(1 << 20, '\0');
    write_file(src_ / "part", data);
    unique_fd in{::open((src_ / "part").c_str(), O_RDONLY | O_CLOEXEC)};
    unique_fd out{::open((dst_ / "copy").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644)};

    auto copied = copy_raw(in.get(), out.get(), zero_blocks::write);

    ASSERT_TRUE(copied) << copied.error().message();
    EXPECT_EQ(copied->zero_blocks, 0u);
    EXPECT_EQ(read_file(dst_ / "copy"), data);
}

TEST_F(ImageRaw, MbrWritesBootCodeAndKeepsThePartitionTable) {
    std::string drive(4096, '\0');
    for (std::size_t i = 0; i < drive.size(); ++i) drive[i] = static_cast<char>(i * 7);
    write_file(dst_ / "drive", drive);
    std::array<std::byte, mbr_boot_code_bytes> code{};
    code.fill(std::byte{0xAB});
    unique_fd fd{::open((dst_ / "drive").c_str(), O_RDWR | O_CLOEXEC)};

    auto written = write_mbr(fd.get(), code);

    ASSERT_TRUE(written) << written.error().message();
    const std::string after = read_file(dst_ / "drive");
    EXPECT_EQ(after.substr(0, 446), std::string(446, '\xAB'));
    EXPECT_EQ(after.substr(446), drive.substr(446));
    auto read_back = read_mbr(fd.get());
    ASSERT_TRUE(read_back);
    EXPECT_EQ(*read_back, code);
}

TEST_F(ImageRaw, MbrFileOfWrongSizeIsRefused) {
    write_file(src_ / "mbr.bin", std::string(445, 'x'));

    auto code = read_mbr_file(src_ / "mbr.bin");

    ASSERT_FALSE(code);
    EXPECT_EQ(code.error().code, errc::bad_mbr_size);
    EXPECT_EQ(code.error().message(), (src_ / "mbr.bin").string() + " is 445 bytes: boot code must be exactly 446 bytes");
}

TEST_F(ImageRaw, WriteMbrRefusesOtherSizes) {
    std::vector<std::byte> code(447);
    unique_fd fd{::open((dst_ / "drive").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644)};

    auto written = write_mbr(fd.get(), code);

    ASSERT_FALSE(written);
    EXPECT_EQ(written.error().message(), "447 bytes: boot code must be exactly 446 bytes");
    EXPECT_EQ(lstat_of(dst_ / "drive").st_size, 0);
}

// As root: device nodes, owners, security.capability, ACLs, mount points.
class ImageTreeRoot : public ImageTree {
protected:
    void SetUp() override {
        if (::geteuid() != 0) GTEST_SKIP() << "needs root (device nodes, owners, security xattrs, mounts)";
        ImageTree::SetUp();
    }
};

TEST_F(ImageTreeRoot, DeviceNodesAndOwnersRoundTrip) {
    ASSERT_EQ(::mknod((src_ / "null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0) << std::strerror(errno);
    ASSERT_EQ(::mknod((src_ / "blk").c_str(), S_IFBLK | 0600, makedev(7, 200)), 0) << std::strerror(errno);
    ASSERT_EQ(::chmod((src_ / "null").c_str(), 0666), 0);  // mknod applied the umask
    write_file(src_ / "owned", "o");
    ASSERT_EQ(::lchown((src_ / "owned").c_str(), 12345, 54321), 0);
    ASSERT_EQ(::chmod((src_ / "owned").c_str(), 06750), 0);  // chown cleared setuid; set after it

    round_trip();

    const auto null = lstat_of(dst_ / "null");
    EXPECT_EQ(null.st_mode, S_IFCHR | 0666);
    EXPECT_EQ(null.st_rdev, makedev(1, 3));
    const auto blk = lstat_of(dst_ / "blk");
    EXPECT_EQ(blk.st_mode, S_IFBLK | 0600);
    EXPECT_EQ(blk.st_rdev, makedev(7, 200));
    const auto owned = lstat_of(dst_ / "owned");
    EXPECT_EQ(owned.st_uid, 12345u);
    EXPECT_EQ(owned.st_gid, 54321u);
    EXPECT_EQ(owned.st_mode, S_IFREG | 06750);
}

TEST_F(ImageTreeRoot, CapabilityAndAclRoundTrip) {
    write_file(src_ / "ping", "p");
    // VFS_CAP_REVISION_2 with CAP_NET_RAW (13) permitted and effective.
    const std::array<std::uint32_t, 5> cap = {0x02000001u, 1u << 13, 0, 0, 0};
    // POSIX ACL xattr v2: user::rw-, user:1000:r--, group::r--, mask::r--, other::---.
    struct acl_entry {
        std::uint16_t tag, perm;
        std::uint32_t id;
    };
    struct {
        std::uint32_t version = 2;
        acl_entry e[5] = {{0x01, 6, ~0u}, {0x02, 4, 1000}, {0x04, 4, ~0u}, {0x10, 4, ~0u}, {0x20, 0, ~0u}};
    } acl;
    if (::setxattr((src_ / "ping").c_str(), "security.capability", cap.data(), sizeof(cap), 0) != 0)
        GTEST_SKIP() << "the temp filesystem refuses security.capability: " << std::strerror(errno);
    if (::setxattr((src_ / "ping").c_str(), "system.posix_acl_access", &acl, sizeof(acl), 0) != 0)
        GTEST_SKIP() << "the temp filesystem refuses POSIX ACLs: " << std::strerror(errno);

    round_trip();

    std::array<std::uint32_t, 5> cap_back{};
    ASSERT_EQ(::getxattr((dst_ / "ping").c_str(), "security.capability", cap_back.data(), sizeof(cap_back)),
              static_cast<ssize_t>(sizeof(cap)))
        << std::strerror(errno);
    EXPECT_EQ(cap_back, cap);
    char acl_back[256] = {};
    const ssize_t n = ::getxattr((dst_ / "ping").c_str(), "system.posix_acl_access", acl_back, sizeof(acl_back));
    ASSERT_EQ(n, static_cast<ssize_t>(sizeof(acl))) << std::strerror(errno);
    EXPECT_EQ(std::memcmp(acl_back, &acl, sizeof(acl)), 0);
    EXPECT_EQ(xstats_.warnings, 0u);
}

// POSIX ACL xattr v2 with its entries (tag, perm, id), as the kernel stores it.
std::string posix_acl(std::initializer_list<std::array<std::uint32_t, 3>> entries) {
    std::string out(4, '\0');
    out[0] = 2;
    for (const auto& [tag, perm, id] : entries) {
        char e[8];
        const std::uint16_t t = static_cast<std::uint16_t>(tag), p = static_cast<std::uint16_t>(perm);
        std::memcpy(e, &t, 2);
        std::memcpy(e + 2, &p, 2);
        std::memcpy(e + 4, &id, 4);
        out.append(e, sizeof(e));
    }
    return out;
}

std::string xattr_of(const fs::path& p, const char* name) {
    char buf[512];
    const ssize_t n = ::lgetxattr(p.c_str(), name, buf, sizeof(buf));
    return n < 0 ? std::string("(") + std::strerror(errno) + ")" : std::string(buf, static_cast<std::size_t>(n));
}

TEST_F(ImageTreeRoot, ExistingDirectoriesGetModeOwnerTimesAndAcls) {
    constexpr std::uint32_t none = ~0u;
    // user::rwx user:1000:r-x group::r-x mask::rwx other::r-x, and a default ACL with user:1001.
    const std::string access = posix_acl({{0x01, 7, none}, {0x02, 5, 1000}, {0x04, 5, none}, {0x10, 7, none}, {0x20, 5, none}});
    const std::string dflt = posix_acl({{0x01, 7, none}, {0x02, 7, 1001}, {0x04, 5, none}, {0x10, 7, none}, {0x20, 0, none}});
    for (const auto& dir : {src_, src_ / "home"}) {
        fs::create_directories(dir);
        ASSERT_EQ(::lchown(dir.c_str(), 1234, 4321), 0);
        ASSERT_EQ(::chmod(dir.c_str(), 02775), 0);
        if (::lsetxattr(dir.c_str(), "system.posix_acl_access", access.data(), access.size(), 0) != 0 ||
            ::lsetxattr(dir.c_str(), "system.posix_acl_default", dflt.data(), dflt.size(), 0) != 0)
            GTEST_SKIP() << "the temp filesystem refuses POSIX ACLs: " << std::strerror(errno);
    }
    write_file(src_ / "home/file", "f");  // created after the directory's attributes, on both sides
    set_mtime(src_ / "home", 1500000000, 123456789);
    set_mtime(src_, 1500000001, 987654321);
    // The target's own root and /home exist already (a fresh filesystem, a mount), with other
    // modes and owners and no ACL.
    fs::create_directory(dst_ / "home");
    ASSERT_EQ(::chmod((dst_ / "home").c_str(), 0700), 0);
    ASSERT_EQ(::chmod(dst_.c_str(), 0711), 0);

    round_trip();

    for (const auto& [dir, sec, nsec] : {std::tuple{dst_, 1500000001, 987654321}, std::tuple{dst_ / "home", 1500000000, 123456789}}) {
        SCOPED_TRACE(dir);
        const auto st = lstat_of(dir);
        EXPECT_EQ(st.st_mode, S_IFDIR | 02775);
        EXPECT_EQ(st.st_uid, 1234u);
        EXPECT_EQ(st.st_gid, 4321u);
        EXPECT_EQ(st.st_mtim.tv_sec, sec);
        EXPECT_EQ(st.st_mtim.tv_nsec, nsec);
        EXPECT_EQ(xattr_of(dir, "system.posix_acl_access"), access);
        EXPECT_EQ(xattr_of(dir, "system.posix_acl_default"), dflt);
    }
    EXPECT_EQ(read_file(dst_ / "home/file"), "f");
    EXPECT_EQ(xstats_.warnings, 0u);
}

TEST_F(ImageTreeRoot, MountPointBelowTheRootIsNotCrossed) {
    fs::create_directories(src_ / "mnt");
    write_file(src_ / "file", "f");
    if (::mount("kaclone-test", (src_ / "mnt").c_str(), "tmpfs", 0, "size=1m,mode=0750") != 0)
        GTEST_SKIP() << "cannot mount a tmpfs here: " << std::strerror(errno);
    struct unmount_at_end {
        fs::path at;
        ~unmount_at_end() { ::umount2(at.c_str(), MNT_DETACH); }
    } unmount{src_ / "mnt"};
    write_file(src_ / "mnt/other-fs", "x");

    write_stats stats;
    unique_fd stream{::memfd_create("stream", MFD_CLOEXEC)};
    auto written = write_tree(src_, {}, stream.get(), stats);
    ASSERT_TRUE(written) << written.error().message();
    ::lseek(stream.get(), 0, SEEK_SET);
    auto extracted = extract_tree(stream.get(), dst_, {}, xstats_);

    ASSERT_TRUE(extracted) << extracted.error().message();
    EXPECT_EQ(stats.mounts_not_crossed, 1u);
    EXPECT_TRUE(fs::is_directory(dst_ / "mnt"));
    EXPECT_TRUE(fs::is_empty(dst_ / "mnt"));
    EXPECT_EQ(read_file(dst_ / "file"), "f");
}

}  // namespace
}  // namespace kaclone::image
