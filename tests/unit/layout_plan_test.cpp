// layout: make_plan places a description on a disk of a given size; format_plan shows it.
#include <kaclone/layout.hpp>

#include <string>

#include <gtest/gtest.h>

#include <kaclone/error_category.hpp>

namespace kaclone::layout {
namespace {

constexpr std::uint64_t mib = desc::mib_bytes;
constexpr std::uint64_t gib = std::uint64_t{1} << 30;
constexpr std::uint64_t tib = std::uint64_t{1} << 40;

disk_facts loop0(std::uint64_t size_bytes = 4096 * mib) { return {"/dev/loop0", size_bytes, 512}; }

desc::desc_file described(std::string_view text) {
    auto d = desc::parse(text, "t.desc");
    EXPECT_TRUE(d.has_value()) << d.error().message();
    return d ? *d : desc::desc_file{};
}

plan planned(std::string_view text, const disk_facts& disk = loop0()) {
    auto p = make_plan(described(text), disk, "t.desc");
    EXPECT_TRUE(p.has_value()) << p.error().message();
    return p ? *p : plan{};
}

error plan_error(std::string_view text, const disk_facts& disk = loop0()) {
    auto p = make_plan(described(text), disk, "t.desc");
    EXPECT_FALSE(p.has_value());
    return p ? error{} : p.error();
}

struct span_of {
    int number;
    std::uint64_t start_bytes, size_bytes;
};

void expect_spans(const plan& p, std::initializer_list<span_of> spans) {
    ASSERT_EQ(p.partitions.size(), spans.size());
    std::size_t i = 0;
    for (const auto& s : spans) {
        const auto& part = p.partitions[i++];
        EXPECT_EQ(part.number, s.number) << "row " << i;
        EXPECT_EQ(part.start_bytes, s.start_bytes) << "partition " << s.number;
        EXPECT_EQ(part.size_bytes, s.size_bytes) << "partition " << s.number;
    }
}

TEST(LayoutPlan, OldExampleKeepsLogicalsInsideExtended) {
    const plan p = planned("linux 3500\nextended fill\nlogical swap 500\nlogical linux fill\n");

    EXPECT_EQ(p.table, desc::table_kind::dos);
    expect_spans(p, {{1, 1 * mib, 3500 * mib},
                     {2, 3501 * mib, 595 * mib},
                     {5, 3502 * mib, 500 * mib},
                     {6, 4003 * mib, 93 * mib}});
    EXPECT_EQ(p.partitions[0].mbr_type, 0x83);
    EXPECT_EQ(p.partitions[1].mbr_type, 0x05);
    EXPECT_EQ(p.partitions[2].mbr_type, 0x82);
    EXPECT_EQ(p.partitions[2].place, desc::placement::logical);
    EXPECT_EQ(p.partitions[3].line, 4);
    EXPECT_EQ(p.partitions[3].gpt_type, "");
}

TEST(LayoutPlan, DescriptionWithoutPartitionsIsRefused) {
    for (const char* text : {"", "# only a comment\n\n", "label: gpt\n"})
        EXPECT_EQ(plan_error(text).message(),
                  "t.desc: no partitions: laying it out would only erase the disk (expected lines "
                  "[logical] TYPE SIZE [key=value]...)")
            << "description: " << text;
}

TEST(LayoutPlan, PercentIsOfWholeDisk) {
    const plan p = planned("linux 25%\nlinux fill\n");

    expect_spans(p, {{1, 1 * mib, 1024 * mib}, {2, 1025 * mib, 3071 * mib}});
}

TEST(LayoutPlan, PercentRoundsDownToMiB) {
    const plan p = planned("linux 33%\n", loop0(1001 * mib));

    expect_spans(p, {{1, 1 * mib, 330 * mib}});
}

TEST(LayoutPlan, FixedSizeStaysExactAndNextStartIsAligned) {
    const plan p = planned("linux 1536K\nlinux 100\n");

    expect_spans(p, {{1, 1 * mib, 1536 * 1024}, {2, 3 * mib, 100 * mib}});
}

TEST(LayoutPlan, FixedSizeRoundsUpToSectors) {
    const plan p = planned("linux 2K\n", {"/dev/nvme0n1", 4096 * mib, 4096});

    expect_spans(p, {{1, 1 * mib, 4096}});
}

TEST(LayoutPlan, FillStopsAtLastWholeMiB) {
    const plan p = planned("linux fill\n", loop0(4096 * mib + 300 * 1024));

    expect_spans(p, {{1, 1 * mib, 4095 * mib}});
}

TEST(LayoutPlan, PrimaryAfterExtendedGoesAfterIt) {
    const plan p = planned("linux 100\nextended 2000\nlogical swap 500\nlinux 300\n");

    expect_spans(p, {{1, 1 * mib, 100 * mib},
                     {2, 101 * mib, 2000 * mib},
                     {3, 2101 * mib, 300 * mib},
                     {5, 102 * mib, 500 * mib}});
}

TEST(LayoutPlan, EachLogicalLeavesOneMiBForItsEbr) {
    const plan p =
        planned("extended 1000\nlogical linux 100\nlogical linux 1536K\nlogical swap 10\n");

    expect_spans(p, {{1, 1 * mib, 1000 * mib},
                     {5, 2 * mib, 100 * mib},
                     {6, 103 * mib, 1536 * 1024},
                     {7, 106 * mib, 10 * mib}});
}

TEST(LayoutPlan, GptKeepsLastMiBForBackupTable) {
    const plan p = planned(
        "label: gpt\nesp 512 fs=vfat mount=/boot/efi\nlinux fill fs=ext4 mount=/ label=root\n");

    EXPECT_EQ(p.table, desc::table_kind::gpt);
    expect_spans(p, {{1, 1 * mib, 512 * mib}, {2, 513 * mib, 3582 * mib}});
    EXPECT_EQ(p.partitions[0].gpt_type, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
    EXPECT_EQ(p.partitions[0].mbr_type, 0);
    EXPECT_EQ(p.partitions[1].gpt_type, "0FC63DAF-8483-4772-8E79-3D69D8477DE4");
    EXPECT_EQ(p.partitions[1].mount, "/");
    EXPECT_EQ(p.partitions[1].label, "root");
}

TEST(LayoutPlan, GptFitsExactlyUpToTail) {
    const plan p = planned("label: gpt\nlinux 4094\n");

    expect_spans(p, {{1, 1 * mib, 4094 * mib}});
}

TEST(LayoutPlan, GptNumbersInFileOrder) {
    const plan p = planned("label: gpt\nbios 1\nswap 1G\nlinux 10%\n");

    expect_spans(p, {{1, 1 * mib, 1 * mib}, {2, 2 * mib, 1024 * mib}, {3, 1026 * mib, 409 * mib}});
    EXPECT_EQ(p.partitions[0].gpt_type, "21686148-6449-6E6F-744E-656564454649");
    EXPECT_EQ(p.partitions[1].gpt_type, "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F");
}

TEST(LayoutPlan, DosFillStopsAtTwoTiB) {
    const plan p = planned("linux 100\nlinux fill\n", {"/dev/big", 3 * tib, 512});

    expect_spans(p, {{1, 1 * mib, 100 * mib}, {2, 101 * mib, 2 * tib - 101 * mib}});
}

TEST(LayoutPlan, GptFillUsesWholeLargeDisk) {
    const plan p = planned("label: gpt\nlinux fill\n", {"/dev/big", 3 * tib, 512});

    expect_spans(p, {{1, 1 * mib, 3 * tib - 2 * mib}});
}

TEST(LayoutPlan, CopiesColumnsAndFlags) {
    const plan p = planned("linux 1G fs=ext4 mount=/boot label=boot flags=boot\n");

    ASSERT_EQ(p.partitions.size(), 1u);
    EXPECT_EQ(p.partitions[0].fs, "ext4");
    EXPECT_EQ(p.partitions[0].mount, "/boot");
    EXPECT_EQ(p.partitions[0].label, "boot");
    EXPECT_EQ(p.partitions[0].flags, std::vector<std::string>{"boot"});
    EXPECT_EQ(p.partitions[0].end_bytes(), 1025 * mib);
}

TEST(LayoutPlanRejects, FixedSizesTooLarge) {
    const error e = plan_error("linux 3000\nlinux 1999\n");

    EXPECT_EQ(e.code, desc::errc::does_not_fit);
    EXPECT_EQ(e.where, "t.desc:2 (partitions need 5000 MiB but the disk /dev/loop0 has 4096 MiB)");
    EXPECT_EQ(e.message(),
              "t.desc:2 (partitions need 5000 MiB but the disk /dev/loop0 has 4096 MiB): "
              "partition does not fit on the disk");
}

TEST(LayoutPlanRejects, NamesFirstPartitionThatDoesNotFit) {
    const error e = plan_error("linux 1000\nlinux 4000\nlinux 4000\n");

    EXPECT_EQ(e.code, desc::errc::does_not_fit);
    EXPECT_EQ(e.where, "t.desc:2 (partitions need 9001 MiB but the disk /dev/loop0 has 4096 MiB)");
}

TEST(LayoutPlanRejects, FillWithLessThanOneMiB) {
    const error e = plan_error("linux 4095\nlinux fill\n");

    EXPECT_EQ(e.code, desc::errc::does_not_fit);
    EXPECT_EQ(e.where, "t.desc:2 (partitions need 4097 MiB but the disk /dev/loop0 has 4096 MiB)");
}

TEST(LayoutPlanRejects, GptTailIsReserved) {
    const error e = plan_error("label: gpt\nlinux 4095\n");

    EXPECT_EQ(e.code, desc::errc::does_not_fit);
    EXPECT_EQ(e.where, "t.desc:2 (partitions need 4097 MiB but the disk /dev/loop0 has 4096 MiB)");
}

TEST(LayoutPlanRejects, LogicalsBeyondFixedExtended) {
    const error e = plan_error("extended 1000\nlogical linux 600\nlogical linux 400\n");

    EXPECT_EQ(e.code, desc::errc::does_not_fit);
    EXPECT_EQ(e.where,
              "t.desc:3 (logical partitions need 1002 MiB but the extended partition on line 1 "
              "has 1000 MiB)");
}

TEST(LayoutPlanRejects, LogicalsBeyondDiskInFilledExtended) {
    const error e = plan_error("linux 3000\nextended fill\nlogical linux 1100\n");

    EXPECT_EQ(e.code, desc::errc::does_not_fit);
    EXPECT_EQ(e.where, "t.desc:3 (partitions need 4102 MiB but the disk /dev/loop0 has 4096 MiB)");
}

TEST(LayoutPlanRejects, DosPartitionBeyondTwoTiB) {
    const error e = plan_error("linux 2T\n", {"/dev/big", 3 * tib, 512});

    EXPECT_EQ(e.code, desc::errc::does_not_fit);
    EXPECT_EQ(e.where,
              "t.desc:1 (a dos partition table reaches only the first 2 TiB of the disk "
              "/dev/big; use label: gpt)");
}

TEST(LayoutPlanRejects, TinyPercent) {
    const error e = plan_error("linux 1%\n", loop0(50 * mib));

    EXPECT_EQ(e.code, desc::errc::does_not_fit);
    EXPECT_EQ(e.where, "t.desc:1 (1% of the disk /dev/loop0 is less than 1 MiB)");
}

TEST(LayoutPlanRejects, HugeSizesDoNotWrap) {
    const error e = plan_error("linux 17592186044415\nlinux 17592186044415\n");

    EXPECT_EQ(e.code, desc::errc::does_not_fit);
    EXPECT_EQ(e.where,
              "t.desc:1 (partitions need 35184372088831 MiB but the disk /dev/loop0 has 4096 "
              "MiB)");
}

TEST(LayoutPlanRejects, DiskSmallerThanAlignment) {
    const error e = plan_error("linux fill\n", loop0(512 * 1024));

    EXPECT_EQ(e.code, desc::errc::does_not_fit);
    EXPECT_EQ(e.where, "t.desc:1 (partitions need 2 MiB but the disk /dev/loop0 has 0 MiB)");
}

TEST(LayoutPlanRejects, InvalidHandMadeDescription) {
    desc::desc_file d;
    d.partitions.push_back(
        {desc::placement::logical, "linux", desc::size_spec::fill(), "", "", "", {}, 4});

    const auto p = make_plan(d, loop0(), "hand");

    ASSERT_FALSE(p.has_value());
    EXPECT_EQ(p.error().code, desc::errc::logical_without_extended);
    EXPECT_EQ(p.error().where, "hand:4");
}

TEST(LayoutPlanRejects, OddSectorSize) {
    const auto p = make_plan(described("linux fill\n"), {"/dev/odd", 4096 * mib, 520}, "t.desc");

    ASSERT_FALSE(p.has_value());
    EXPECT_EQ(p.error().code, kaclone::errc::out_of_range);
    EXPECT_EQ(p.error().where, "sector size of /dev/odd (520 bytes)");
}

TEST(LayoutFormat, ShowsOneRowPerPartition) {
    const plan p = planned(
        "linux 3500 fs=ext4 mount=/ flags=boot\nextended fill\nlogical swap 500 fs=swap\n"
        "logical linux fill fs=xfs mount=/srv label=data\n");

    const std::string text = format_plan(p);

    EXPECT_EQ(text,
              "/dev/loop0: 4 GiB, 512-byte sectors, label: dos\n"
              "NUMBER  START     SIZE      TYPE      FS    MOUNT  LABEL  FLAGS\n"
              "1       1 MiB     3500 MiB  linux     ext4  /      -      boot\n"
              "2       3501 MiB  595 MiB   extended  -     -      -      -\n"
              "5       3502 MiB  500 MiB   swap      swap  -      -      -\n"
              "6       4003 MiB  93 MiB    linux     xfs   /srv   data   -\n");
}

TEST(LayoutFormat, ShowsExactSizesThatAreNotWholeMiB) {
    const plan p = planned("label: gpt\nlinux 1536K\n");

    const std::string text = format_plan(p);

    EXPECT_EQ(text,
              "/dev/loop0: 4 GiB, 512-byte sectors, label: gpt\n"
              "NUMBER  START  SIZE      TYPE   FS  MOUNT  LABEL  FLAGS\n"
              "1       1 MiB  1.50 MiB  linux  -   -      -      -\n");
}

}  // namespace
}  // namespace kaclone::layout
