// fixup without root: the fstab, resume and hosts rewrites on real-world styles, the hostnames
// file, each step's plan (and "skipped" reason) on a temp target tree, and applying edits.
#include <kaclone/fixup.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

namespace kaclone::fixup {
namespace {

namespace fs = std::filesystem;

const std::string root_uuid = "11111111-1111-4111-8111-111111111111";
const std::string boot_uuid = "22222222-2222-4222-8222-222222222222";
const std::string home_uuid = "33333333-3333-4333-8333-333333333333";
const std::string swap_uuid = "44444444-4444-4444-8444-444444444444";
const std::string swap2_uuid = "55555555-5555-4555-8555-555555555555";
const std::string efi_uuid = "ABCD-1234";

std::vector<new_filesystem> new_disk() {
    return {
        {"/dev/sdb1", "vfat", efi_uuid, "EFI", "aaaa0001-01", "/boot/efi", 1},
        {"/dev/sdb2", "ext4", boot_uuid, "boot", "aaaa0001-02", "/boot", 2},
        {"/dev/sdb3", "ext4", root_uuid, "root", "aaaa0001-03", "/", 3},
        {"/dev/sdb4", "swap", swap_uuid, "", "aaaa0001-04", "", 4},
        {"/dev/sdb5", "xfs", home_uuid, "home", "aaaa0001-05", "/home", 5},
        {"/dev/sdb6", "swap", swap2_uuid, "", "aaaa0001-06", "", 6},
    };
}

rewritten fstab(std::string_view text, const std::map<std::string, std::string>& map = {}) {
    return rewrite_fstab(text, new_disk(), map);
}

// ---- fstab ----

TEST(FixupFstab, DebianStyleKeepsCommentsAndColumns) {
    const std::string in =
        "# /etc/fstab: static file system information.\n"
        "#\n"
        "# <file system> <mount point>   <type>  <options>       <dump>  <pass>\n"
        "# / was on /dev/sda2 during installation\n"
        "UUID=0a1b2c3d-aaaa-bbbb-cccc-000000000002 /               ext4    errors=remount-ro 0       1\n"
        "# /boot was on /dev/sda1 during installation\n"
        "UUID=0a1b2c3d-aaaa-bbbb-cccc-000000000001 /boot           ext4    defaults        0       2\n"
        "# swap was on /dev/sda3 during installation\n"
        "UUID=0a1b2c3d-aaaa-bbbb-cccc-000000000003 none            swap    sw              0       0\n"
        "/dev/sr0        /media/cdrom0   udf,iso9660 user,noauto     0       0\n";

    const rewritten out = fstab(in);

    EXPECT_EQ(out.text,
              "# /etc/fstab: static file system information.\n"
              "#\n"
              "# <file system> <mount point>   <type>  <options>       <dump>  <pass>\n"
              "# / was on /dev/sda2 during installation\n"
              "UUID=" + root_uuid + " /               ext4    errors=remount-ro 0       1\n"
              "# /boot was on /dev/sda1 during installation\n"
              "UUID=" + boot_uuid + " /boot           ext4    defaults        0       2\n"
              "# swap was on /dev/sda3 during installation\n"
              "UUID=" + swap_uuid + " none            swap    sw              0       0\n"
              "/dev/sr0        /media/cdrom0   udf,iso9660 user,noauto     0       0\n");
    ASSERT_EQ(out.changes.size(), 3u);
    EXPECT_EQ(out.changes[0].old_line,
              "UUID=0a1b2c3d-aaaa-bbbb-cccc-000000000002 /               ext4    errors=remount-ro 0       1");
    EXPECT_EQ(out.changes[0].new_line,
              "UUID=" + root_uuid + " /               ext4    errors=remount-ro 0       1");
}

TEST(FixupFstab, EveryNamingFormBecomesUuid) {
    const std::string in =
        "/dev/sda3\t/\text4\tdefaults,noatime\t0\t1\n"
        "UUID=\"0A1B2C3D-AAAA-BBBB-CCCC-000000000001\"  /boot  ext4  defaults  0  2\n"
        "LABEL=EFI /boot/efi vfat umask=0077 0 1\n"
        "PARTUUID=9e1f2a3b-05 /home xfs defaults,nofail 0 2\n"
        "/dev/disk/by-id/ata-QEMU_HARDDISK_QM00001-part4 none swap sw 0 0\n"
        "PARTLABEL=swap2 swap swap defaults,pri=5 0 0\n";

    const rewritten out = fstab(in);

    EXPECT_EQ(out.text,
              "UUID=" + root_uuid + "\t/\text4\tdefaults,noatime\t0\t1\n"
              "UUID=" + boot_uuid + "  /boot  ext4  defaults  0  2\n"
              "UUID=" + efi_uuid + " /boot/efi vfat umask=0077 0 1\n"
              "UUID=" + home_uuid + " /home xfs defaults,nofail 0 2\n"
              "UUID=" + swap_uuid + " none swap sw 0 0\n"
              "UUID=" + swap2_uuid + " swap swap defaults,pri=5 0 0\n");
    EXPECT_EQ(out.changes.size(), 6u);
}

TEST(FixupFstab, NotClonedEntriesStayByteIdentical) {
    const std::string in =
        "proc            /proc           proc    defaults          0       0\n"
        "tmpfs /tmp tmpfs defaults,size=2G,mode=1777 0 0\n"
        "nas:/export/home  /mnt/nas  nfs  rw,hard,intr  0 0\n"
        "nas:/export/data /mnt/data4 nfs4 defaults,_netdev 0 0\n"
        "//nas/share /mnt/smb cifs credentials=/root/.smb 0 0\n"
        "/srv/data  /var/www/data  none  bind  0 0\n"
        "/dev/sda3  /chroot/dev  ext4  bind,ro  0 0\n"
        "/swapfile none swap sw 0 0\n"
        "/dev/sdc1 /mnt/backup ext4 noauto,user 0 0\n"
        "UUID=77777777-7777-4777-8777-777777777777 /srv ext4 defaults 0 2\n"
        "   # an indented comment\n"
        "\n"
        "\t\n"
        "/dev/mapper/vg-data /data ext4 defaults 0 2";

    const rewritten out = fstab(in);

    EXPECT_EQ(out.text, in);
    EXPECT_TRUE(out.changes.empty());
}

TEST(FixupFstab, FedoraStyleLvmAndUuids) {
    const std::string in =
        "\n"
        "#\n"
        "# /etc/fstab\n"
        "# Created by anaconda on Mon Jan  1 00:00:00 2024\n"
        "#\n"
        "/dev/mapper/fedora-root /                       ext4    defaults        1 1\n"
        "UUID=0a1b2c3d-aaaa-bbbb-cccc-000000000001 /boot                   ext4    defaults        1 2\n"
        "UUID=1A2B-3C4D          /boot/efi               vfat    umask=0077,shortname=winnt 0 2\n"
        "/dev/mapper/fedora-swap none                    swap    defaults        0 0\n";

    const rewritten out = fstab(in);

    EXPECT_EQ(out.text,
              "\n"
              "#\n"
              "# /etc/fstab\n"
              "# Created by anaconda on Mon Jan  1 00:00:00 2024\n"
              "#\n"
              "UUID=" + root_uuid + " /                       ext4    defaults        1 1\n"
              "UUID=" + boot_uuid + " /boot                   ext4    defaults        1 2\n"
              "UUID=" + efi_uuid + "          /boot/efi               vfat    umask=0077,shortname=winnt 0 2\n"
              "UUID=" + swap_uuid + " none                    swap    defaults        0 0\n");
}

TEST(FixupFstab, ArchGenfstabStyle) {
    const std::string in =
        "# Static information about the filesystems.\n"
        "# See fstab(5) for details.\n"
        "\n"
        "# <file system> <dir> <type> <options> <dump> <pass>\n"
        "# /dev/sda2\n"
        "UUID=0a1b2c3d-aaaa-bbbb-cccc-000000000002\t/         \text4      \trw,relatime\t0 1\n"
        "\n"
        "# /dev/sda3\n"
        "UUID=0a1b2c3d-aaaa-bbbb-cccc-000000000003\tnone      \tswap      \tdefaults  \t0 0\n";

    const rewritten out = fstab(in);

    EXPECT_EQ(out.text,
              "# Static information about the filesystems.\n"
              "# See fstab(5) for details.\n"
              "\n"
              "# <file system> <dir> <type> <options> <dump> <pass>\n"
              "# /dev/sda2\n"
              "UUID=" + root_uuid + "\t/         \text4      \trw,relatime\t0 1\n"
              "\n"
              "# /dev/sda3\n"
              "UUID=" + swap_uuid + "\tnone      \tswap      \tdefaults  \t0 0\n");
}

TEST(FixupFstab, UbuntuStyleSwapfileStays) {
    const std::string in =
        "# /etc/fstab: static file system information.\n"
        "#\n"
        "# Use 'blkid' to print the universally unique identifier for a\n"
        "# device; this may be used with UUID= as a more robust way to name devices\n"
        "# that works even if disks are added and removed. See fstab(5).\n"
        "#\n"
        "# <file system> <mount point>   <type>  <options>       <dump>  <pass>\n"
        "/dev/disk/by-uuid/0a1b2c3d-aaaa-bbbb-cccc-000000000002 / ext4 defaults 0 1\n"
        "# /boot/efi was on /dev/nvme0n1p1 during curtin installation\n"
        "/dev/disk/by-uuid/1A2B-3C4D /boot/efi vfat defaults 0 1\n"
        "/swap.img\tnone\tswap\tsw\t0\t0\n";

    const rewritten out = fstab(in);

    EXPECT_EQ(out.text,
              "# /etc/fstab: static file system information.\n"
              "#\n"
              "# Use 'blkid' to print the universally unique identifier for a\n"
              "# device; this may be used with UUID= as a more robust way to name devices\n"
              "# that works even if disks are added and removed. See fstab(5).\n"
              "#\n"
              "# <file system> <mount point>   <type>  <options>       <dump>  <pass>\n"
              "UUID=" + root_uuid + " / ext4 defaults 0 1\n"
              "# /boot/efi was on /dev/nvme0n1p1 during curtin installation\n"
              "UUID=" + efi_uuid + " /boot/efi vfat defaults 0 1\n"
              "/swap.img\tnone\tswap\tsw\t0\t0\n");
    EXPECT_EQ(out.changes.size(), 2u);
}

TEST(FixupFstab, MountPointsCompareNormalized) {
    const rewritten out = fstab("LABEL=home /home/ xfs defaults 0 2\n");

    EXPECT_EQ(out.text, "UUID=" + home_uuid + " /home/ xfs defaults 0 2\n");
}

TEST(FixupFstab, SecondRewriteChangesNothing) {
    const std::string in =
        "/dev/sda3 / ext4 defaults 0 1\n"
        "UUID=\"x\" /boot ext4 defaults 0 2\n"
        "/dev/sda4 none swap sw 0 0\n"
        "/dev/sda6 none swap sw 0 0\n"
        "/dev/sda7 none swap sw 0 0\n"
        "tmpfs /tmp tmpfs defaults 0 0\n"
        "UUID=old-data /data ext4 defaults 0 2";
    const std::map<std::string, std::string> map{{"UUID=OLD-DATA", home_uuid}};
    const rewritten once = fstab(in, map);

    const rewritten twice = fstab(once.text, map);

    EXPECT_EQ(once.changes.size(), 5u);
    EXPECT_EQ(twice.text, once.text);
    EXPECT_TRUE(twice.changes.empty());
}

TEST(FixupFstab, SwapsTakeTheNewSwapsInOrder) {
    const rewritten out =
        fstab("/dev/sda4 none swap sw 0 0\n/dev/sda6 none swap sw 0 0\n/dev/sda7 none swap sw 0 0\n");

    EXPECT_EQ(out.text, "UUID=" + swap_uuid + " none swap sw 0 0\nUUID=" + swap2_uuid +
                            " none swap sw 0 0\n/dev/sda7 none swap sw 0 0\n");
}

TEST(FixupFstab, ExplicitMapWinsOverMountPoint) {
    const std::map<std::string, std::string> map{{"/dev/sda3", home_uuid}};

    const rewritten out = fstab("/dev/sda3 / ext4 defaults 0 1\nUUID=old /data ext4 defaults 0 2\n", map);

    EXPECT_EQ(out.text, "UUID=" + home_uuid + " / ext4 defaults 0 1\nUUID=old /data ext4 defaults 0 2\n");
}

TEST(FixupFstab, NoTrailingNewlineStaysThatWay) {
    const rewritten out = fstab("/dev/sda3 / ext4 defaults 0 1");

    EXPECT_EQ(out.text, "UUID=" + root_uuid + " / ext4 defaults 0 1");
}

TEST(FixupFstab, NothingKnownChangesNothing) {
    const std::string in = "/dev/sda3 / ext4 defaults 0 1\n";

    const rewritten out = rewrite_fstab(in, {}, {});

    EXPECT_EQ(out.text, in);
    EXPECT_TRUE(out.changes.empty());
}

// ---- resume ----

TEST(FixupResume, DeviceBecomesFirstNewSwap) {
    const rewritten out = rewrite_resume("# resume\nRESUME=UUID=0a1b-old\n", new_disk(), {});

    EXPECT_EQ(out.text, "# resume\nRESUME=UUID=" + swap_uuid + "\n");
    ASSERT_EQ(out.changes.size(), 1u);
    EXPECT_EQ(out.changes[0].old_line, "RESUME=UUID=0a1b-old");
}

TEST(FixupResume, NoneAndAutoStayAndSecondRunChangesNothing) {
    EXPECT_TRUE(rewrite_resume("RESUME=none\n", new_disk(), {}).changes.empty());
    EXPECT_TRUE(rewrite_resume("RESUME=auto\n", new_disk(), {}).changes.empty());
    const rewritten once = rewrite_resume("RESUME=/dev/sda4\n", new_disk(), {{"/dev/sda4", swap2_uuid}});

    const rewritten twice = rewrite_resume(once.text, new_disk(), {{"/dev/sda4", swap2_uuid}});

    EXPECT_EQ(once.text, "RESUME=UUID=" + swap2_uuid + "\n");
    EXPECT_EQ(twice.text, once.text);
    EXPECT_TRUE(twice.changes.empty());
}

// ---- hosts and hostname ----

TEST(FixupHosts, DebianLineGetsTheNewNameAndKeepsTheDomain) {
    const std::string in =
        "127.0.0.1\tlocalhost\n127.0.1.1\tgolden.example.com\tgolden\n\n::1 localhost ip6-localhost\n";

    const rewritten out = rewrite_hosts(in, "golden", "n1");

    EXPECT_EQ(out.text,
              "127.0.0.1\tlocalhost\n127.0.1.1\tn1.example.com\tn1\n\n::1 localhost ip6-localhost\n");
    ASSERT_EQ(out.changes.size(), 1u);
    EXPECT_EQ(out.changes[0].old_line, "127.0.1.1\tgolden.example.com\tgolden");
    EXPECT_EQ(out.changes[0].new_line, "127.0.1.1\tn1.example.com\tn1");
    EXPECT_TRUE(rewrite_hosts(out.text, "n1", "n1").changes.empty());
}

TEST(FixupHosts, UnknownOldNamesAreReplacedCommentKept) {
    const rewritten out = rewrite_hosts("127.0.1.1   foo bar  # set by hand\n", "golden", "n1");

    EXPECT_EQ(out.text, "127.0.1.1   n1  # set by hand\n");
}

TEST(FixupHosts, MissingLineIsAppended) {
    const rewritten out = rewrite_hosts("127.0.0.1 localhost", "", "n1");

    EXPECT_EQ(out.text, "127.0.0.1 localhost\n127.0.1.1\tn1\n");
    ASSERT_EQ(out.changes.size(), 1u);
    EXPECT_EQ(out.changes[0].old_line, "");
    EXPECT_EQ(out.changes[0].new_line, "127.0.1.1\tn1");
}

TEST(FixupHosts, HostnameFileAndValidity) {
    EXPECT_EQ(hostname_file("n1"), "n1\n");
    EXPECT_TRUE(valid_hostname("node-07.lab.example"));
    EXPECT_FALSE(valid_hostname(""));
    EXPECT_FALSE(valid_hostname("-node"));
    EXPECT_FALSE(valid_hostname("node..lab"));
    EXPECT_FALSE(valid_hostname("node_7"));
    EXPECT_FALSE(valid_hostname(std::string(64, 'a')));
}

// ---- hostnames file ----

TEST(FixupHostnames, ParsesMacsIpsAndComments) {
    const std::string text =
        "# node list\n"
        "AA-BB-CC-DD-EE-01   node01   # first rack\n"
        "\n"
        "aa:bb:cc:dd:ee:02\tnode02\n"
        "10.0.0.3 node03\n"
        "fd00:0:0::4 node04\n";

    auto entries = parse_hostnames(text, "hosts.txt");

    ASSERT_TRUE(entries) << entries.error().message();
    ASSERT_EQ(entries->size(), 4u);
    EXPECT_EQ((*entries)[0].address, "aa:bb:cc:dd:ee:01");
    EXPECT_EQ((*entries)[0].name, "node01");
    EXPECT_EQ((*entries)[0].line, 2);
    EXPECT_EQ((*entries)[1].address, "aa:bb:cc:dd:ee:02");
    EXPECT_EQ((*entries)[2].address, "10.0.0.3");
    EXPECT_EQ((*entries)[3].address, "fd00::4");
    EXPECT_EQ((*entries)[3].line, 6);
}

TEST(FixupHostnames, ErrorsNameFileAndLine) {
    struct bad {
        std::string text;
        errc code;
        std::string where;
    };
    const std::vector<bad> cases{
        {"aa:bb:cc:dd:ee:01 node01\n10.0.0.2 node02 extra\n", errc::bad_hostnames_line,
         "hosts.txt:2 (3 columns, want 2)"},
        {"# only a comment\nnode03\n", errc::bad_hostnames_line, "hosts.txt:2 (1 column, want 2)"},
        {"aa:bb:cc:dd:ee node01\n", errc::bad_address, "hosts.txt:1 (aa:bb:cc:dd:ee)"},
        {"10.0.0.300 node01\n", errc::bad_address, "hosts.txt:1 (10.0.0.300)"},
        {"10.0.0.1 node_01\n", errc::bad_hostname, "hosts.txt:1 (node_01)"},
        {"10.0.0.1 a\n\n10.0.0.1 b\n", errc::duplicate_address,
         "hosts.txt:3 (10.0.0.1, also on line 1)"},
        {"AA:BB:CC:DD:EE:01 a\naa-bb-cc-dd-ee-01 b\n", errc::duplicate_address,
         "hosts.txt:2 (aa-bb-cc-dd-ee-01, also on line 1)"},
    };
    for (const auto& c : cases) {
        auto entries = parse_hostnames(c.text, "hosts.txt");

        ASSERT_FALSE(entries) << c.text;
        EXPECT_EQ(entries.error().code, make_error_code(c.code)) << c.text;
        EXPECT_EQ(entries.error().where, c.where) << c.text;
    }
}

TEST(FixupHostnames, MatchesThisNodeByMacOrIp) {
    auto entries = parse_hostnames("aa:bb:cc:dd:ee:01 node01\n10.0.0.2 node02\nfd00::3 node03\n", "h");
    ASSERT_TRUE(entries);

    auto by_mac = match_hostname(*entries, {"10.9.9.9", "AA:BB:CC:DD:EE:01"}, "h");
    auto by_ip = match_hostname(*entries, {"52:54:00:00:00:01", "10.0.0.2"}, "h");
    auto by_ip6 = match_hostname(*entries, {"fd00:0::3"}, "h");

    ASSERT_TRUE(by_mac);
    EXPECT_EQ(by_mac->name, "node01");
    ASSERT_TRUE(by_ip);
    EXPECT_EQ(by_ip->name, "node02");
    ASSERT_TRUE(by_ip6);
    EXPECT_EQ(by_ip6->name, "node03");
}

TEST(FixupHostnames, NoMatchAndAmbiguousMatch) {
    auto entries = parse_hostnames("aa:bb:cc:dd:ee:01 node01\n10.0.0.2 node02\n10.0.0.3 node01\n", "h.txt");
    ASSERT_TRUE(entries);

    auto none = match_hostname(*entries, {"52:54:00:00:00:01", "10.0.0.9"}, "h.txt");
    auto two = match_hostname(*entries, {"aa:bb:cc:dd:ee:01", "10.0.0.2"}, "h.txt");
    auto same = match_hostname(*entries, {"aa:bb:cc:dd:ee:01", "10.0.0.3"}, "h.txt");

    ASSERT_FALSE(none);
    EXPECT_EQ(none.error().code, make_error_code(errc::no_hostname_match));
    EXPECT_EQ(none.error().where, "h.txt (this node: 52:54:00:00:00:01, 10.0.0.9)");
    ASSERT_FALSE(two);
    EXPECT_EQ(two.error().code, make_error_code(errc::ambiguous_hostname));
    EXPECT_EQ(two.error().where, "h.txt:1 and h.txt:2");
    ASSERT_TRUE(same);
    EXPECT_EQ(same->line, 1);
}

// ---- steps on a temp target ----

class FixupSteps : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/kaclone-fixup-test.XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        root_ = tmpl;
        facts_.target = root_;
        facts_.bootloader = "grub";
    }
    void TearDown() override { fs::remove_all(root_); }

    void put(const std::string& inside, const std::string& text, fs::perms mode = fs::perms(0644)) {
        const fs::path p = root_ + inside;
        fs::create_directories(p.parent_path());
        std::ofstream(p) << text;
        fs::permissions(p, mode);
    }
    std::string get(const std::string& inside) const {
        std::ifstream in(root_ + inside);
        std::stringstream s;
        s << in.rdbuf();
        return s.str();
    }
    step_plan plan(std::string_view name) const {
        auto p = plan_step(name, facts_);
        EXPECT_TRUE(p) << p.error().message();
        return p ? *p : step_plan{};
    }

    std::string root_;
    facts facts_;
};

TEST_F(FixupSteps, EveryStepSaysWhyItIsSkipped) {
    EXPECT_EQ(plan("fstab").skipped, "no /etc/fstab in the target");
    put("/etc/fstab", "/dev/sda1 / ext4 defaults 0 1\n");
    EXPECT_EQ(plan("fstab").skipped, "the new filesystems are not known (give --disk)");
    EXPECT_EQ(plan("initramfs").skipped, "no update-initramfs, dracut or mkinitrd in the target");
    EXPECT_EQ(plan("bootloader").skipped, "no --disk given");
    facts_.disk = "/dev/sdb";
    EXPECT_EQ(plan("bootloader").skipped, "no grub-install in the target");
    facts_.bootloader = "none";
    EXPECT_EQ(plan("bootloader").skipped, "--bootloader none");
    EXPECT_EQ(plan("hooks").skipped, "no /etc/kaclone/fixup.d in the target");
    put("/etc/kaclone/fixup.d/README", "not executable\n");
    EXPECT_EQ(plan("hooks").skipped, "no executable in /etc/kaclone/fixup.d");

    const step_plan identity = plan("identity");

    EXPECT_EQ(identity.skipped, "");
    EXPECT_EQ(identity.notes,
              (std::vector<std::string>{
                  "ssh host keys skipped: no /etc/ssh in the target (ssh is not installed)",
                  "hostname skipped: no --hostname or --hostnames given"}));
    fs::create_directories(root_ + "/etc/ssh");
    EXPECT_EQ(plan("identity").notes.front(),
              "ssh host keys skipped: no ssh-keygen in the target (ssh is not installed)");
    EXPECT_TRUE(plan("network").empty());
    EXPECT_EQ(plan("network").skipped, "");
}

TEST_F(FixupSteps, UnknownStepIsAnError) {
    auto p = plan_step("kernel", facts_);

    ASSERT_FALSE(p);
    EXPECT_EQ(p.error().code, make_error_code(errc::unknown_step));
    EXPECT_EQ(p.error().where, "kernel");
}

TEST_F(FixupSteps, CommandsFoundInTheTarget) {
    put("/usr/sbin/update-initramfs", "#!/bin/sh\n", fs::perms(0755));
    put("/usr/sbin/grub-install", "#!/bin/sh\n", fs::perms(0755));
    put("/usr/sbin/update-grub", "#!/bin/sh\n", fs::perms(0755));
    put("/etc/kaclone/fixup.d/20-b", "#!/bin/sh\n", fs::perms(0755));
    put("/etc/kaclone/fixup.d/10-a", "#!/bin/sh\n", fs::perms(0755));
    facts_.disk = "/dev/sdb";
    facts_.hostname = "n1";
    facts_.node_index = 3;
    facts_.initrd_args = {"-v"};

    const step_plan initramfs = plan("initramfs");
    const step_plan boot = plan("bootloader");
    const step_plan hooks = plan("hooks");

    ASSERT_EQ(initramfs.commands.size(), 1u);
    EXPECT_EQ(initramfs.commands[0].argv,
              (std::vector<std::string>{"/usr/sbin/update-initramfs", "-u", "-k", "all", "-v"}));
    ASSERT_EQ(boot.commands.size(), 2u);
    EXPECT_EQ(boot.commands[0].argv,
              (std::vector<std::string>{"/usr/sbin/grub-install", "--target=i386-pc", "/dev/sdb"}));
    EXPECT_EQ(boot.commands[1].argv, (std::vector<std::string>{"/usr/sbin/update-grub"}));
    ASSERT_EQ(hooks.commands.size(), 2u);
    EXPECT_EQ(hooks.commands[0].argv, (std::vector<std::string>{"/etc/kaclone/fixup.d/10-a"}));
    EXPECT_EQ(hooks.commands[1].label, "20-b");
    EXPECT_EQ(hooks.commands[0].env,
              (std::vector<std::string>{"TARGET=" + root_, "DISK=/dev/sdb", "HOSTNAME=n1", "NODE_INDEX=3"}));
}

TEST_F(FixupSteps, BootFlagGoesToTheBootPartitionOfDosTables) {
    put("/usr/sbin/grub-install", "#!/bin/sh\n", fs::perms(0755));
    facts_.disk = "/dev/sdb";
    facts_.filesystems = new_disk();
    facts_.table = "dos";
    facts_.active_partitions = {1, 3};

    const step_plan moved = plan("bootloader");
    facts_.active_partitions = {2};
    const step_plan kept = plan("bootloader");
    facts_.table = "gpt";
    facts_.active_partitions = {};
    const step_plan gpt = plan("bootloader");

    ASSERT_TRUE(moved.boot_flag);
    EXPECT_EQ(moved.boot_flag->disk, "/dev/sdb");
    EXPECT_EQ(moved.boot_flag->partition, 2);
    EXPECT_EQ(moved.boot_flag->was_active, (std::vector<int>{1, 3}));
    EXPECT_FALSE(kept.boot_flag);
    EXPECT_FALSE(gpt.boot_flag);
    EXPECT_EQ(moved.notes, (std::vector<std::string>{
                               "grub configuration skipped: no update-grub or grub-mkconfig in the target"}));
}

TEST_F(FixupSteps, EfiGrubWhenAnEspIsMounted) {
    put("/usr/sbin/grub-install", "#!/bin/sh\n", fs::perms(0755));
    put("/usr/sbin/grub-mkconfig", "#!/bin/sh\n", fs::perms(0755));
    fs::create_directories(root_ + "/usr/lib/grub/x86_64-efi");
    facts_.disk = "/dev/sdb";
    facts_.filesystems = new_disk();

    const step_plan boot = plan("bootloader");

    ASSERT_EQ(boot.commands.size(), 2u);
    EXPECT_EQ(boot.commands[0].argv,
              (std::vector<std::string>{"/usr/sbin/grub-install", "--target=x86_64-efi",
                                        "--efi-directory=/boot/efi", "--no-nvram"}));
    EXPECT_EQ(boot.commands[1].argv,
              (std::vector<std::string>{"/usr/sbin/grub-mkconfig", "-o", "/boot/grub/grub.cfg"}));
}

TEST_F(FixupSteps, ApplyThenSecondPlanIsEmpty) {
    put("/etc/fstab", "# fstab\n/dev/sda3 / ext4 defaults 0 1\ntmpfs /tmp tmpfs defaults 0 0\n",
        fs::perms(0600));
    put("/etc/machine-id", "0123456789abcdef0123456789abcdef\n", fs::perms(0444));
    put("/var/lib/dbus/machine-id", "0123456789abcdef0123456789abcdef\n");
    put("/etc/hostname", "golden\n");
    put("/etc/hosts", "127.0.0.1\tlocalhost\n127.0.1.1\tgolden\n");
    put("/etc/udev/rules.d/70-persistent-net.rules", "SUBSYSTEM==\"net\"\n");
    put("/var/lib/dhcp/dhclient.eth0.leases", "lease {}\n");
    put("/var/lib/dhcp/keep.conf", "not a lease\n");
    put("/var/lib/NetworkManager/internal-x-eth0.lease", "x\n");
    facts_.filesystems = new_disk();
    facts_.hostname = "n1";
    std::vector<std::string> log;
    apply_options options;
    options.log = [&](const std::string& line) { log.push_back(line); };

    for (const auto* name : {"fstab", "identity", "network"}) {
        auto ok = apply(plan(name), root_, options);
        ASSERT_TRUE(ok) << ok.error().message();
    }

    EXPECT_EQ(log, (std::vector<std::string>{
                       "fstab: /etc/fstab: /dev/sda3 / ext4 defaults 0 1 -> UUID=" + root_uuid +
                           " / ext4 defaults 0 1",
                       "identity: /etc/machine-id: 0123456789abcdef0123456789abcdef -> (empty)",
                       "identity: /var/lib/dbus/machine-id: 0123456789abcdef0123456789abcdef -> "
                       "symlink to /etc/machine-id",
                       "identity: /etc/hostname: golden -> n1",
                       "identity: /etc/hosts: 127.0.1.1\tgolden -> 127.0.1.1\tn1",
                       "network: /etc/udev/rules.d/70-persistent-net.rules: removed",
                       "network: /var/lib/dhcp/dhclient.eth0.leases: removed",
                       "network: /var/lib/NetworkManager/internal-x-eth0.lease: removed",
                   }));
    EXPECT_EQ(get("/etc/fstab"),
              "# fstab\nUUID=" + root_uuid + " / ext4 defaults 0 1\ntmpfs /tmp tmpfs defaults 0 0\n");
    EXPECT_EQ(fs::status(root_ + "/etc/fstab").permissions(), fs::perms(0600));
    EXPECT_EQ(fs::status(root_ + "/etc/machine-id").permissions(), fs::perms(0444));
    EXPECT_EQ(get("/etc/machine-id"), "");
    EXPECT_EQ(fs::read_symlink(root_ + "/var/lib/dbus/machine-id"), "/etc/machine-id");
    EXPECT_TRUE(fs::exists(root_ + "/var/lib/dhcp/keep.conf"));
    for (const auto* name : {"fstab", "identity", "network"}) EXPECT_TRUE(plan(name).empty()) << name;
}

TEST_F(FixupSteps, DryRunWritesNothing) {
    put("/etc/machine-id", "0123\n");
    put("/var/lib/dhcp/dhclient.leases", "lease {}\n");
    std::vector<std::string> log;
    apply_options options;
    options.mode = dry_run::yes;
    options.log = [&](const std::string& line) { log.push_back(line); };

    ASSERT_TRUE(apply(plan("identity"), root_, options));
    ASSERT_TRUE(apply(plan("network"), root_, options));

    EXPECT_EQ(log, (std::vector<std::string>{"identity: /etc/machine-id: 0123 -> (empty)",
                                             "network: /var/lib/dhcp/dhclient.leases: removed"}));
    EXPECT_EQ(get("/etc/machine-id"), "0123\n");
    EXPECT_TRUE(fs::exists(root_ + "/var/lib/dhcp/dhclient.leases"));
}

TEST_F(FixupSteps, SymlinkedFileIsRefused) {
    put("/etc/fstab.real", "/dev/sda3 / ext4 defaults 0 1\n");
    fs::create_symlink("/etc/fstab.real", root_ + "/etc/fstab");
    facts_.filesystems = new_disk();

    auto p = plan_step("fstab", facts_);

    ASSERT_FALSE(p);
    EXPECT_EQ(p.error().code, make_error_code(errc::symlink_refused));
    EXPECT_EQ(p.error().where, root_ + "/etc/fstab");
}

}  // namespace
}  // namespace kaclone::fixup
