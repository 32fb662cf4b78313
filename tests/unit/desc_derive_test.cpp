// desc derive: table facts -> description (describe), mount point lookup, partition names.
#include <kaclone/desc_derive.hpp>

#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace kaclone::desc {
namespace {

constexpr std::uint64_t mib = mib_bytes;

partition_facts dos_part(int number, std::uint8_t type, std::uint64_t size_mib) {
    partition_facts p;
    p.number = number;
    p.start_bytes = static_cast<std::uint64_t>(number) * mib;
    p.size_bytes = size_mib * mib;
    p.mbr_type = type;
    p.extended = type == 0x05 || type == 0x0f || type == 0x85;
    p.logical = number > 4;
    return p;
}

partition_facts gpt_part(int number, std::string guid, std::uint64_t size_mib) {
    partition_facts p;
    p.number = number;
    p.size_bytes = size_mib * mib;
    p.gpt_type = std::move(guid);
    return p;
}

table_facts old_example() {
    table_facts t;
    t.partitions = {dos_part(1, 0x83, 3500), dos_part(2, 0x05, 4000), dos_part(5, 0x82, 500),
                    dos_part(6, 0x83, 3498)};
    t.partitions[0].fs = "ext4";
    t.partitions[0].mount = "/";
    t.partitions[2].fs = "swap";
    t.partitions[3].fs = "xfs";
    t.partitions[3].mount = "/data";
    return t;
}

TEST(DescDescribe, OldExampleWithExactSizes) {
    const derived d = describe(old_example(), fill_last::no);

    EXPECT_EQ(print(d.file),
              "linux 3500 fs=ext4 mount=/\nextended 4000\nlogical swap 500 fs=swap\n"
              "logical linux 3498 fs=xfs mount=/data\n");
    EXPECT_TRUE(d.notes.empty());
}

TEST(DescDescribe, FillLastFillsLastPrimaryAndLastLogical) {
    const derived d = describe(old_example(), fill_last::yes);

    EXPECT_EQ(print(d.file),
              "linux 3500 fs=ext4 mount=/\nextended fill\nlogical swap 500 fs=swap\n"
              "logical linux fill fs=xfs mount=/data\n");
}

TEST(DescDescribe, ResultParsesBackToTheSameFile) {
    const derived d = describe(old_example(), fill_last::yes);

    auto back = parse(print(d.file), "derived");

    ASSERT_TRUE(back.has_value()) << back.error().message();
    EXPECT_EQ(*back, d.file);
}

TEST(DescDescribe, OrdersByPartitionNumber) {
    table_facts t;
    t.partitions = {dos_part(3, 0x83, 30), dos_part(1, 0x83, 10), dos_part(2, 0x82, 20)};

    const derived d = describe(t, fill_last::no);

    EXPECT_EQ(print(d.file), "linux 10\nswap 20\nlinux 30\n");
}

TEST(DescDescribe, DosTypeBytesByName) {
    table_facts t;
    t.partitions = {dos_part(1, 0xfd, 10), dos_part(2, 0x07, 10), dos_part(3, 0x0f, 10),
                    dos_part(5, 0xef, 1)};

    const derived d = describe(t, fill_last::no);

    EXPECT_EQ(print(d.file), "typefd 10\ntype07 10\nextended 10\nlogical typeef 1\n");
}

TEST(DescDescribe, DosBootFlag) {
    table_facts t;
    t.partitions = {dos_part(1, 0x83, 100)};
    t.partitions[0].boot = true;

    const derived d = describe(t, fill_last::no);

    EXPECT_EQ(print(d.file), "linux 100 flags=boot\n");
}

TEST(DescDescribe, GptNamesTypesAndAddsTheirFlags) {
    table_facts t;
    t.table = table_kind::gpt;
    t.partitions = {gpt_part(1, "c12a7328-f81f-11d2-ba4b-00a0c93ec93b", 256),
                    gpt_part(2, "21686148-6449-6E6F-744E-656564454649", 1),
                    gpt_part(3, "0FC63DAF-8483-4772-8E79-3D69D8477DE4", 2048),
                    gpt_part(4, "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F", 512),
                    gpt_part(5, "4f68bce3-e8cd-4db1-96e7-fbcaf984b709", 100)};
    t.partitions[0].fs = "vfat";
    t.partitions[0].mount = "/boot/efi";
    t.partitions[0].label = "EFI";
    t.partitions[2].boot = true;

    const derived d = describe(t, fill_last::no);

    EXPECT_EQ(print(d.file),
              "label: gpt\nesp 256 fs=vfat mount=/boot/efi label=EFI flags=esp\n"
              "bios 1 flags=bios_grub\nlinux 2048 flags=boot\nswap 512\n"
              "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709 100\n");
    EXPECT_TRUE(d.notes.empty());
}

TEST(DescDescribe, GptFillLastFillsOnlyTheLast) {
    table_facts t;
    t.table = table_kind::gpt;
    t.partitions = {gpt_part(1, "0FC63DAF-8483-4772-8E79-3D69D8477DE4", 10),
                    gpt_part(2, "0FC63DAF-8483-4772-8E79-3D69D8477DE4", 20)};

    const derived d = describe(t, fill_last::yes);

    EXPECT_EQ(print(d.file), "label: gpt\nlinux 10\nlinux fill\n");
}

TEST(DescDescribe, SizeThatIsNotWholeMiBIsWrittenInKiB) {
    table_facts t;
    t.partitions = {dos_part(1, 0x83, 0)};
    t.partitions[0].size_bytes = 1536 * 1024;

    const derived d = describe(t, fill_last::no);

    EXPECT_EQ(print(d.file), "linux 1536K\n");
    EXPECT_TRUE(d.notes.empty());
}

TEST(DescDescribe, SizeThatIsNotWholeKiBIsRoundedDownWithNote) {
    table_facts t;
    t.partitions = {dos_part(1, 0x83, 0)};
    t.partitions[0].size_bytes = 10 * mib + 512;

    const derived d = describe(t, fill_last::no);

    EXPECT_EQ(print(d.file), "linux 10\n");
    ASSERT_EQ(d.notes.size(), 1u);
    EXPECT_EQ(d.notes[0],
              "partition 1: its size of 10486272 bytes is not a whole number of KiB; rounded down");
}

TEST(DescDescribe, UnknownFilesystemIsLeftOutWithNote) {
    table_facts t;
    t.partitions = {dos_part(1, 0x07, 100)};
    t.partitions[0].fs = "ntfs";

    const derived d = describe(t, fill_last::no);

    EXPECT_EQ(print(d.file), "type07 100\n");
    ASSERT_EQ(d.notes.size(), 1u);
    EXPECT_EQ(d.notes[0], "partition 1: filesystem ntfs is not one the format knows; fs= left out");
}

TEST(DescDescribe, SwapSignatureOnLinuxTypeIsLeftOut) {
    table_facts t;
    t.partitions = {dos_part(1, 0x83, 100)};
    t.partitions[0].fs = "swap";

    const derived d = describe(t, fill_last::no);

    EXPECT_EQ(print(d.file), "linux 100\n");
    ASSERT_EQ(d.notes.size(), 1u);
    EXPECT_EQ(d.notes[0], "partition 1: filesystem swap does not suit type linux; fs= left out");
}

TEST(DescDescribe, LabelWithBlankIsLeftOut) {
    table_facts t;
    t.partitions = {dos_part(1, 0x83, 100)};
    t.partitions[0].fs = "ext4";
    t.partitions[0].label = "my data";

    const derived d = describe(t, fill_last::no);

    EXPECT_EQ(print(d.file), "linux 100 fs=ext4\n");
    ASSERT_EQ(d.notes.size(), 1u);
    EXPECT_EQ(
        d.notes[0],
        "partition 1: label 'my data' holds a blank, '#' or control character; label= left out");
}

TEST(DescDescribe, SecondUseOfMountPointIsLeftOut) {
    table_facts t;
    t.partitions = {dos_part(1, 0x83, 100), dos_part(2, 0x83, 100)};
    t.partitions[0].mount = "/srv";
    t.partitions[1].mount = "/srv";

    const derived d = describe(t, fill_last::no);

    EXPECT_EQ(print(d.file), "linux 100 mount=/srv\nlinux 100\n");
    ASSERT_EQ(d.notes.size(), 1u);
    EXPECT_EQ(
        d.notes[0],
        "partition 2: mount point /srv is already used by an earlier partition; mount= left out");
}

TEST(DescDescribe, MountPointWithBlankIsLeftOut) {
    table_facts t;
    t.partitions = {dos_part(1, 0x83, 100)};
    t.partitions[0].mount = "/mnt/my disk";

    const derived d = describe(t, fill_last::no);

    EXPECT_EQ(print(d.file), "linux 100\n");
    ASSERT_EQ(d.notes.size(), 1u);
    EXPECT_EQ(d.notes[0],
              "partition 1: mount point /mnt/my disk cannot be written; mount= left out");
}

TEST(DescDescribe, SwapTypeKeepsNoMountPoint) {
    table_facts t;
    t.partitions = {dos_part(1, 0x82, 100)};
    t.partitions[0].fs = "swap";
    t.partitions[0].mount = "/swap";

    const derived d = describe(t, fill_last::no);

    EXPECT_EQ(print(d.file), "swap 100 fs=swap\n");
    EXPECT_EQ(d.notes.size(), 1u);
}

TEST(DescDescribe, ExtendedKeepsNoBootFlag) {
    table_facts t;
    t.partitions = {dos_part(1, 0x05, 100), dos_part(5, 0x83, 50)};
    t.partitions[0].boot = true;

    const derived d = describe(t, fill_last::no);

    EXPECT_EQ(print(d.file), "extended 100\nlogical linux 50\n");
    ASSERT_EQ(d.notes.size(), 1u);
    EXPECT_EQ(d.notes[0], "partition 1: the boot flag of an extended partition is left out");
}

TEST(DescDescribe, NumberGapIsNoted) {
    table_facts t;
    t.partitions = {dos_part(1, 0x83, 10), dos_part(3, 0x83, 30)};

    const derived d = describe(t, fill_last::no);

    EXPECT_EQ(print(d.file), "linux 10\nlinux 30\n");
    ASSERT_EQ(d.notes.size(), 1u);
    EXPECT_EQ(d.notes[0],
              "partition 3: the partition numbers have a gap; layout numbers them 1, 2, ... in "
              "this order");
}

TEST(DescDescribe, EmptyTableGivesEmptyFile) {
    const derived d = describe(table_facts{}, fill_last::yes);

    EXPECT_EQ(print(d.file), "");
}

// ---- find_mount_point ----

partition_identity loop0p1() {
    partition_identity id;
    id.node = "/dev/loop0p1";
    id.major = 259;
    id.minor = 0;
    id.uuid = "28b10c00-aac2-4ad2-8dca-84c6f66fcdb2";
    id.label = "root";
    id.partuuid = "73ce83ac-01";
    return id;
}

mount_entry mounted(std::string source, std::string target, unsigned major, unsigned minor,
                    bool whole = true) {
    return {std::move(source), std::move(target), major, minor, whole};
}

mount_entry fstab_line(std::string source, std::string target) {
    return {std::move(source), std::move(target), 0, 0, true};
}

TEST(DescMountPoint, RunningMountByDeviceNumber) {
    const std::vector<mount_entry> running{mounted("/dev/vda", "/", 254, 0),
                                           mounted("/dev/whatever", "/srv", 259, 0)};

    EXPECT_EQ(find_mount_point(loop0p1(), running, {}), "/srv");
}

TEST(DescMountPoint, RunningMountBySource) {
    const std::vector<mount_entry> running{mounted("/dev/loop0p1", "/srv", 0, 40)};

    EXPECT_EQ(find_mount_point(loop0p1(), running, {}), "/srv");
}

TEST(DescMountPoint, BindMountOfSubdirectoryDoesNotCount) {
    const std::vector<mount_entry> running{mounted("/dev/loop0p1", "/bind", 259, 0, false),
                                           mounted("/dev/loop0p1", "/real", 259, 0)};

    EXPECT_EQ(find_mount_point(loop0p1(), running, {}), "/real");
}

TEST(DescMountPoint, RootMakesMountsRelative) {
    const std::vector<mount_entry> running{mounted("/dev/loop0p1", "/mnt/disk", 259, 0),
                                           mounted("/dev/loop0p6", "/mnt/disk/data", 259, 3)};
    partition_identity p6 = loop0p1();
    p6.node = "/dev/loop0p6";
    p6.minor = 3;

    EXPECT_EQ(find_mount_point(loop0p1(), running, {}, "/mnt/disk"), "/");
    EXPECT_EQ(find_mount_point(p6, running, {}, "/mnt/disk/"), "/data");
}

TEST(DescMountPoint, RootIgnoresMountsOutsideIt) {
    const std::vector<mount_entry> running{mounted("/dev/loop0p1", "/mnt/diskette", 259, 0)};

    EXPECT_EQ(find_mount_point(loop0p1(), running, {}, "/mnt/disk"), "");
}

TEST(DescMountPoint, FstabByUuidIgnoringCase) {
    const std::vector<mount_entry> fstab{
        fstab_line("UUID=28B10C00-AAC2-4AD2-8DCA-84C6F66FCDB2", "/")};

    EXPECT_EQ(find_mount_point(loop0p1(), {}, fstab), "/");
}

TEST(DescMountPoint, FstabByLabelPartuuidAndNode) {
    const std::vector<mount_entry> by_label{fstab_line("LABEL=root", "/a")};
    const std::vector<mount_entry> by_partuuid{fstab_line("PARTUUID=73CE83AC-01", "/b")};
    const std::vector<mount_entry> by_node{fstab_line("/dev/loop0p1", "/c")};
    const std::vector<mount_entry> other{fstab_line("LABEL=Root", "/d"), fstab_line("UUID=", "/e")};

    EXPECT_EQ(find_mount_point(loop0p1(), {}, by_label), "/a");
    EXPECT_EQ(find_mount_point(loop0p1(), {}, by_partuuid), "/b");
    EXPECT_EQ(find_mount_point(loop0p1(), {}, by_node), "/c");
    EXPECT_EQ(find_mount_point(loop0p1(), {}, other), "");
}

TEST(DescMountPoint, RunningMountWinsOverFstab) {
    const std::vector<mount_entry> running{mounted("/dev/loop0p1", "/now", 259, 0)};
    const std::vector<mount_entry> fstab{fstab_line("LABEL=root", "/boot")};

    EXPECT_EQ(find_mount_point(loop0p1(), running, fstab), "/now");
}

TEST(DescPartitionName, AddsPAfterADigit) {
    EXPECT_EQ(partition_name("sda", 1), "sda1");
    EXPECT_EQ(partition_name("loop0", 5), "loop0p5");
    EXPECT_EQ(partition_name("nvme0n1", 2), "nvme0n1p2");
    EXPECT_EQ(partition_name("mmcblk0", 12), "mmcblk0p12");
}

}  // namespace
}  // namespace kaclone::desc
