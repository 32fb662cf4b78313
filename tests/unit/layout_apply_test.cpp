// layout apply, the parts without a disk: mkfs commands and tools, program lookup, mount order,
// kernel partition sizes, label checks.
#include <kaclone/layout_apply.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

namespace kaclone::layout {
namespace {

namespace fs = std::filesystem;

constexpr std::uint64_t mib = desc::mib_bytes;

planned_partition part(std::string fs_name, std::string label = {}, std::string mount = {}) {
    planned_partition p;
    p.number = 1;
    p.type = "linux";
    p.size_bytes = 100 * mib;
    p.fs = std::move(fs_name);
    p.label = std::move(label);
    p.mount = std::move(mount);
    p.line = 1;
    return p;
}

using argv = std::vector<std::string>;

TEST(LayoutMkfs, CommandsNeverAsk) {
    EXPECT_EQ(mkfs_command(part("ext4"), "/dev/sdb1"),
              (argv{"mkfs.ext4", "-F", "-q", "/dev/sdb1"}));
    EXPECT_EQ(mkfs_command(part("ext2"), "/dev/sdb1"),
              (argv{"mkfs.ext2", "-F", "-q", "/dev/sdb1"}));
    EXPECT_EQ(mkfs_command(part("xfs"), "/dev/sdb1"), (argv{"mkfs.xfs", "-f", "-q", "/dev/sdb1"}));
    EXPECT_EQ(mkfs_command(part("btrfs"), "/dev/sdb1"),
              (argv{"mkfs.btrfs", "-f", "-q", "/dev/sdb1"}));
    EXPECT_EQ(mkfs_command(part("vfat"), "/dev/sdb1"), (argv{"mkfs.vfat", "/dev/sdb1"}));
    EXPECT_EQ(mkfs_command(part("swap"), "/dev/sdb1"), (argv{"mkswap", "/dev/sdb1"}));
    EXPECT_EQ(mkfs_command(part("jfs"), "/dev/sdb1"), (argv{"mkfs.jfs", "-q", "/dev/sdb1"}));
    EXPECT_EQ(mkfs_command(part("reiserfs"), "/dev/sdb1"),
              (argv{"mkfs.reiserfs", "-f", "-f", "-q", "/dev/sdb1"}));
}

TEST(LayoutMkfs, LabelOptionPerFilesystem) {
    EXPECT_EQ(mkfs_command(part("ext4", "root"), "/dev/sdb1"),
              (argv{"mkfs.ext4", "-F", "-q", "-L", "root", "/dev/sdb1"}));
    EXPECT_EQ(mkfs_command(part("vfat", "EFI"), "/dev/sdb1"),
              (argv{"mkfs.vfat", "-n", "EFI", "/dev/sdb1"}));
    EXPECT_EQ(mkfs_command(part("swap", "sw"), "/dev/sdb1"),
              (argv{"mkswap", "-L", "sw", "/dev/sdb1"}));
    EXPECT_EQ(mkfs_command(part("reiserfs", "r"), "/dev/sdb1"),
              (argv{"mkfs.reiserfs", "-f", "-f", "-q", "-l", "r", "/dev/sdb1"}));
}

TEST(LayoutMkfs, NoFilesystemNoCommand) {
    EXPECT_TRUE(mkfs_command(part(""), "/dev/sdb1").empty());
}

TEST(LayoutMkfs, ToolsNameTheirDebianPackage) {
    EXPECT_EQ(mkfs_tool_for("ext3")->package, "e2fsprogs");
    EXPECT_EQ(mkfs_tool_for("xfs")->package, "xfsprogs");
    EXPECT_EQ(mkfs_tool_for("btrfs")->package, "btrfs-progs");
    EXPECT_EQ(mkfs_tool_for("vfat")->package, "dosfstools");
    EXPECT_EQ(mkfs_tool_for("jfs")->package, "jfsutils");
    EXPECT_EQ(mkfs_tool_for("reiserfs")->package, "reiserfsprogs");
    EXPECT_EQ(mkfs_tool_for("swap")->program, "mkswap");
    EXPECT_EQ(mkfs_tool_for("swap")->package, "util-linux");
    EXPECT_FALSE(mkfs_tool_for("ntfs").has_value());
}

class LayoutFindProgram : public ::testing::Test {
protected:
    void SetUp() override {
        char pattern[] = "/tmp/kaclone-findprog.XXXXXX";
        ASSERT_NE(::mkdtemp(pattern), nullptr);
        dir_ = pattern;
    }
    void TearDown() override { fs::remove_all(dir_); }

    std::string make(const std::string& sub, const std::string& name, fs::perms perms) {
        fs::create_directories(dir_ / sub);
        const fs::path p = dir_ / sub / name;
        std::ofstream(p) << "#!/bin/sh\n";
        fs::permissions(p, perms);
        return p.string();
    }

    fs::path dir_;
};

TEST_F(LayoutFindProgram, FirstExecutableInPathOrder) {
    make("a", "mkfs.xfs", fs::perms::owner_read);  // not executable: skipped
    const std::string b = make("b", "mkfs.xfs", fs::perms::owner_all);
    make("c", "mkfs.xfs", fs::perms::owner_all);
    const std::string path =
        (dir_ / "a").string() + ":" + (dir_ / "b").string() + ":" + (dir_ / "c").string();

    EXPECT_EQ(find_program("mkfs.xfs", path), b);
}

TEST_F(LayoutFindProgram, MissingGivesEmpty) {
    make("a", "mkfs.ext4", fs::perms::owner_all);

    EXPECT_EQ(find_program("mkfs.xfs", (dir_ / "a").string()), "");
    EXPECT_EQ(find_program("mkfs.xfs", ""), "");
}

TEST_F(LayoutFindProgram, DirectoryWithProgramNameIsNotAProgram) {
    fs::create_directories(dir_ / "a" / "mkfs.xfs");

    EXPECT_EQ(find_program("mkfs.xfs", (dir_ / "a").string()), "");
}

TEST(LayoutMountOrder, ParentsFirst) {
    plan p;
    for (const char* m : {"/boot/efi", "/data", "", "/", "/boot", "/a/b/c"})
        p.partitions.push_back(part("ext4", "", m));

    const auto order = mount_order(p);

    std::vector<std::string> mounts;
    for (const auto* o : order) mounts.push_back(o->mount);
    EXPECT_EQ(mounts, (std::vector<std::string>{"/", "/boot", "/data", "/boot/efi", "/a/b/c"}));
}

TEST(LayoutKernelSize, ExtendedIsOneKiBOrOneSector) {
    planned_partition ext = part("");
    ext.type = "extended";
    ext.size_bytes = 2000 * mib;

    EXPECT_EQ(kernel_size_bytes(ext, 512), 1024u);
    EXPECT_EQ(kernel_size_bytes(ext, 4096), 4096u);
    EXPECT_EQ(kernel_size_bytes(part("ext4"), 512), 100 * mib);
}

TEST(LayoutCheckPlan, LabelTooLongForXfs) {
    plan p;
    p.partitions.push_back(part("xfs", "thirteen-long"));
    p.partitions.back().line = 3;
    apply_options options;
    options.desc_name = "t.desc";

    auto ok = check_plan(p, options);

    ASSERT_FALSE(ok.has_value());
    EXPECT_EQ(ok.error().code, errc::label_too_long);
    EXPECT_EQ(ok.error().where,
              "t.desc:3 (label=thirteen-long has 13 bytes; xfs takes at most 12)");
}

TEST(LayoutCheckPlan, LabelsAtTheirLimitPass) {
    plan p;
    p.partitions.push_back(part("vfat", "ELEVEN-CHAR"));
    p.partitions.push_back(part("ext4", "sixteen-chars-ok"));
    p.partitions.push_back(part("", "no-fs-no-limit-at-all"));

    EXPECT_TRUE(check_plan(p, apply_options{}).has_value());
}

TEST(LayoutErrors, MessagesSayWhatToDo) {
    EXPECT_EQ(make_error_code(errc::mkfs_missing).message(), "mkfs program not found in PATH");
    EXPECT_EQ(std::error_code(errc::in_use).category().name(), std::string("kaclone.layout"));
}

}  // namespace
}  // namespace kaclone::layout
