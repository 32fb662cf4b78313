// desc: parse, validate and print disk descriptions.
#include <kaclone/desc.hpp>

#include <ostream>
#include <string>

#include <gtest/gtest.h>

namespace kaclone::desc {
namespace {

constexpr std::uint64_t mib = mib_bytes;

desc_file parsed(std::string_view text) {
    auto d = parse(text, "t.desc");
    EXPECT_TRUE(d.has_value()) << d.error().message();
    return d ? *d : desc_file{};
}

partition_spec only_partition(std::string_view text) {
    const desc_file d = parsed(text);
    EXPECT_EQ(d.partitions.size(), 1u);
    return d.partitions.empty() ? partition_spec{} : d.partitions.front();
}

TEST(DescParse, OldExampleHasPrimaryExtendedAndTwoLogicals) {
    const std::string text = "linux 3500\nextended fill\nlogical swap 500\nlogical linux fill\n";

    const desc_file d = parsed(text);

    EXPECT_EQ(d.table, table_kind::dos);
    EXPECT_FALSE(d.label_line);
    ASSERT_EQ(d.partitions.size(), 4u);
    const auto spec = [](placement place, const char* type, size_spec size, int line) {
        return partition_spec{place, type, size, "", "", "", {}, line};
    };
    EXPECT_EQ(d.partitions[0],
              spec(placement::primary, "linux", size_spec::of_bytes(3500 * mib), 1));
    EXPECT_EQ(d.partitions[1], spec(placement::primary, "extended", size_spec::fill(), 2));
    EXPECT_EQ(d.partitions[2], spec(placement::logical, "swap", size_spec::of_bytes(500 * mib), 3));
    EXPECT_EQ(d.partitions[3], spec(placement::logical, "linux", size_spec::fill(), 4));
}

TEST(DescParse, EmptyTextHasNoPartitions) {
    const desc_file d = parsed("");

    EXPECT_TRUE(d.partitions.empty());
    EXPECT_EQ(d.table, table_kind::dos);
}

TEST(DescParse, SkipsCommentsAndBlankLinesButCountsThem) {
    const desc_file d = parsed("# sda of node01\n\n  \t\nlinux 100   # root\r\n#swap 5\nswap 5\n");

    ASSERT_EQ(d.partitions.size(), 2u);
    EXPECT_EQ(d.partitions[0].line, 4);
    EXPECT_EQ(d.partitions[0].size, size_spec::of_bytes(100 * mib));
    EXPECT_EQ(d.partitions[1].line, 6);
}

struct size_case {
    const char* text;
    size_spec size;
};

void PrintTo(const size_case& c, std::ostream* os) { *os << '"' << c.text << '"'; }

class DescSize : public ::testing::TestWithParam<size_case> {};

TEST_P(DescSize, Parses) {
    const partition_spec p = only_partition(std::string("linux ") + GetParam().text + "\n");

    EXPECT_EQ(p.size, GetParam().size);
}

INSTANTIATE_TEST_SUITE_P(
    Desc, DescSize,
    ::testing::Values(size_case{"3500", size_spec::of_bytes(3500 * mib)},
                      size_case{"0500", size_spec::of_bytes(500 * mib)},
                      size_case{"512M", size_spec::of_bytes(512 * mib)},
                      size_case{"20G", size_spec::of_bytes(20ull << 30)},
                      size_case{"1T", size_spec::of_bytes(1ull << 40)},
                      size_case{"4096K", size_spec::of_bytes(4 * mib)},
                      size_case{"1536K", size_spec::of_bytes(1536 * 1024)},
                      size_case{"3KiB", size_spec::of_bytes(3 * 1024)},
                      size_case{"2MiB", size_spec::of_bytes(2 * mib)},
                      size_case{"5GiB", size_spec::of_bytes(5ull << 30)},
                      size_case{"2TiB", size_spec::of_bytes(2ull << 40)},
                      size_case{"17592186044415", size_spec::of_bytes(17592186044415ull << 20)},
                      size_case{"10%", size_spec::of_percent(10)},
                      size_case{"100%", size_spec::of_percent(100)},
                      size_case{"fill", size_spec::fill()}));

TEST(DescParse, ReadsColumns) {
    const partition_spec p =
        only_partition("linux 100 flags=boot label=root mount=/srv//data/ fs=ext4\n");

    EXPECT_EQ(p.fs, "ext4");
    EXPECT_EQ(p.mount, "/srv/data");
    EXPECT_EQ(p.label, "root");
    EXPECT_EQ(p.flags, std::vector<std::string>{"boot"});
}

TEST(DescParse, SpellsTypesCanonically) {
    const desc_file d =
        parsed("type83 1\ntype82 1\ntypeFD 1\nextended 100\nlogical typec 1\nlogical type0B 1\n");

    ASSERT_EQ(d.partitions.size(), 6u);
    EXPECT_EQ(d.partitions[0].type, "linux");
    EXPECT_EQ(d.partitions[1].type, "swap");
    EXPECT_EQ(d.partitions[2].type, "typefd");
    EXPECT_EQ(d.partitions[4].type, "type0c");
    EXPECT_EQ(d.partitions[5].type, "type0b");
}

TEST(DescParse, ExtendedTypeCodesAreExtended) {
    EXPECT_EQ(only_partition("type05 100\n").type, "extended");
    EXPECT_EQ(only_partition("type0f 100\n").type, "extended");
    EXPECT_EQ(only_partition("type85 100\n").type, "extended");
}

TEST(DescParse, ReadsGpt) {
    const desc_file d = parsed(
        "# efi machine\nlabel: gpt\nbios 1\nesp 512M fs=vfat mount=/boot/efi flags=esp\n"
        "swap 2G fs=swap\nlinux fill fs=ext4 mount=/\n");

    EXPECT_EQ(d.table, table_kind::gpt);
    EXPECT_TRUE(d.label_line);
    ASSERT_EQ(d.partitions.size(), 4u);
    EXPECT_EQ(d.partitions[0].type, "bios");
    EXPECT_EQ(d.partitions[1].type, "esp");
    EXPECT_EQ(d.partitions[1].flags, std::vector<std::string>{"esp"});
    EXPECT_EQ(d.partitions[3].line, 6);
}

TEST(DescParse, GptGuidsAreUpperCaseAndKnownOnesNamed) {
    const desc_file d = parsed(
        "label:gpt\na19d880f-05fc-4d3b-a006-743f0f84911e 100\n"
        "0fc63daf-8483-4772-8e79-3d69d8477de4 100\n");

    ASSERT_EQ(d.partitions.size(), 2u);
    EXPECT_EQ(d.partitions[0].type, "A19D880F-05FC-4D3B-A006-743F0F84911E");
    EXPECT_EQ(d.partitions[1].type, "linux");
}

TEST(DescParse, ExplicitDosLabelIsKept) {
    const desc_file d = parsed("label: dos\nlinux fill\n");

    EXPECT_EQ(d.table, table_kind::dos);
    EXPECT_TRUE(d.label_line);
}

TEST(DescParse, PercentMayComeBeforeOtherPartitions) {
    const desc_file d = parsed("linux 10%\nswap 2G\nlinux fill\n");

    EXPECT_EQ(d.partitions.size(), 3u);
}

TEST(DescParse, FillMayEndEachTable) {
    const desc_file d = parsed("linux 100\nextended fill\nlogical linux fill\n");

    EXPECT_EQ(d.partitions.size(), 3u);
}

TEST(DescParse, PrimaryMayFollowLogicals) {
    const desc_file d = parsed("linux 100\nextended 2000\nlogical swap 500\nlinux 300\n");

    EXPECT_EQ(d.partitions.size(), 4u);
}

TEST(DescParse, AcceptsFourPrimariesAndManyLogicals) {
    std::string text = "linux 1\nlinux 1\nlinux 1\nextended fill\n";
    for (int i = 0; i < 40; ++i) text += "logical linux 1\n";

    EXPECT_EQ(parsed(text).partitions.size(), 44u);
}

TEST(DescParse, AcceptsOneHundredTwentyEightGptPartitions) {
    std::string text = "label: gpt\n";
    for (int i = 0; i < 128; ++i) text += "linux 1\n";

    EXPECT_EQ(parsed(text).partitions.size(), 128u);
}

struct bad_case {
    const char* name;
    const char* text;
    errc code;
    const char* where;
};

void PrintTo(const bad_case& c, std::ostream* os) { *os << c.name; }

class DescRejects : public ::testing::TestWithParam<bad_case> {};

TEST_P(DescRejects, WithExactErrcAndWhere) {
    const auto d = parse(GetParam().text, "t.desc");

    ASSERT_FALSE(d.has_value());
    EXPECT_EQ(d.error().code, GetParam().code) << d.error().message();
    EXPECT_EQ(d.error().where, GetParam().where);
}

INSTANTIATE_TEST_SUITE_P(
    Desc, DescRejects,
    ::testing::Values(
        bad_case{"UnknownWord", "linux 100\ntypezz 500\n", errc::unknown_type, "t.desc:2"},
        bad_case{"EmptyMbrType", "type00 5\n", errc::unknown_type, "t.desc:1"},
        bad_case{"ThreeHexDigits", "type123 5\n", errc::unknown_type, "t.desc:1"},
        bad_case{"TypeWithoutDigits", "type 5\n", errc::unknown_type, "t.desc:1"},
        bad_case{"UpperCaseName", "Linux 5\n", errc::unknown_type, "t.desc:1"},
        bad_case{"EspOnDos", "esp 100\n", errc::unknown_type, "t.desc:1"},
        bad_case{"MbrTypeOnGpt", "label: gpt\ntype83 100\n", errc::unknown_type, "t.desc:2"},
        bad_case{"ShortGuid", "label: gpt\n0FC63DAF-8483-4772-8E79-3D69D8477DE 1\n",
                 errc::unknown_type, "t.desc:2"},
        bad_case{"ZeroGuid", "label: gpt\n00000000-0000-0000-0000-000000000000 1\n",
                 errc::unknown_type, "t.desc:2"},
        bad_case{"MissingSize", "linux\n", errc::bad_size, "t.desc:1"},
        bad_case{"ZeroSize", "linux 0\n", errc::bad_size, "t.desc:1"},
        bad_case{"ZeroWithUnit", "linux 0G\n", errc::bad_size, "t.desc:1"},
        bad_case{"NegativeSize", "linux 100\nswap -5\n", errc::bad_size, "t.desc:2"},
        bad_case{"HugeNumber", "linux 99999999999999999999\n", errc::bad_size, "t.desc:1"},
        bad_case{"OverflowsBytes", "linux 17592186044416\n", errc::bad_size, "t.desc:1"},
        bad_case{"OverflowsWithUnit", "linux 16777216T\n", errc::bad_size, "t.desc:1"},
        bad_case{"Decimal", "linux 1.5G\n", errc::bad_size, "t.desc:1"},
        bad_case{"DecimalUnit", "linux 10MB\n", errc::bad_size, "t.desc:1"},
        bad_case{"UnknownUnit", "linux 10X\n", errc::bad_size, "t.desc:1"},
        bad_case{"LowerCaseUnit", "linux 10m\n", errc::bad_size, "t.desc:1"},
        bad_case{"ZeroPercent", "linux 0%\n", errc::bad_size, "t.desc:1"},
        bad_case{"OverHundredPercent", "linux 101%\n", errc::bad_size, "t.desc:1"},
        bad_case{"BarePercent", "linux %\n", errc::bad_size, "t.desc:1"},
        bad_case{"NegativePercent", "linux -10%\n", errc::bad_size, "t.desc:1"},
        bad_case{"FillBeforePrimary", "linux fill\nswap 500\n", errc::fill_not_last, "t.desc:1"},
        bad_case{"ExtendedFillBeforePrimary",
                 "linux 100\nextended fill\nlogical linux 1\nlinux 5\n", errc::fill_not_last,
                 "t.desc:2"},
        bad_case{"LogicalFillBeforeLogical",
                 "linux 100\nextended 1000\nlogical linux fill\n# x\nlogical swap 100\n",
                 errc::fill_not_last, "t.desc:3"},
        bad_case{"LogicalFirst", "linux 100\nlogical swap 100\n", errc::logical_without_extended,
                 "t.desc:2"},
        bad_case{"SecondExtended", "extended 100\nextended 100\n", errc::two_extended, "t.desc:2"},
        bad_case{"LogicalExtended", "extended 100\nlogical extended 50\n", errc::two_extended,
                 "t.desc:2"},
        bad_case{"FivePrimaries", "linux 1\nlinux 1\nlinux 1\nlinux 1\nlinux 1\n",
                 errc::too_many_primaries, "t.desc:5"},
        bad_case{"FourPrimariesAndExtended", "linux 1\nlinux 1\nlinux 1\nlinux 1\nextended 5\n",
                 errc::too_many_primaries, "t.desc:5"},
        bad_case{"ExtendedOnGpt", "label: gpt\nextended 100\n", errc::extended_on_gpt, "t.desc:2"},
        bad_case{"LogicalOnGpt", "label: gpt\nlinux 100\nlogical linux 100\n",
                 errc::extended_on_gpt, "t.desc:3"},
        bad_case{"LabelAfterPartition", "linux 1\nlabel: gpt\n", errc::bad_label, "t.desc:2"},
        bad_case{"SecondLabel", "label: gpt\nlabel: gpt\n", errc::bad_label, "t.desc:2"},
        bad_case{"UnknownLabel", "label: mbr\n", errc::bad_label, "t.desc:1"},
        bad_case{"EmptyLabel", "# c\nlabel:\n", errc::bad_label, "t.desc:2"},
        bad_case{"LabelWithoutColon", "label gpt\n", errc::bad_label, "t.desc:1"},
        bad_case{"LabelWithExtraWord", "label: gpt now\n", errc::bad_label, "t.desc:1"},
        bad_case{"UnknownKey", "linux 100 color=red\n", errc::bad_column, "t.desc:1 (unknown key color=)"},
        bad_case{"EmptyKey", "linux 100 =red\n", errc::bad_column, "t.desc:1 (=red)"},
        bad_case{"UnknownFs", "linux 100 fs=ntfs\n", errc::bad_column, "t.desc:1 (fs=ntfs)"},
        bad_case{"EmptyValue", "linux 100 fs=\n", errc::bad_column, "t.desc:1 (fs= without a value)"},
        bad_case{"RepeatedKey", "linux 100 fs=ext4 fs=xfs\n", errc::bad_column, "t.desc:1 (fs= twice)"},
        bad_case{"RelativeMount", "linux 100 mount=boot\n", errc::bad_column, "t.desc:1 (mount=boot)"},
        bad_case{"DotDotMount", "linux 100 mount=/a/../b\n", errc::bad_column, "t.desc:1 (mount=/a/../b)"},
        bad_case{"UnknownFlag", "linux 100 flags=hidden\n", errc::bad_column, "t.desc:1 (flag hidden)"},
        bad_case{"RepeatedFlag", "linux 100 flags=boot,boot\n", errc::bad_column, "t.desc:1 (flag boot twice)"},
        bad_case{"EmptyFlag", "linux 100 flags=boot,\n", errc::bad_column, "t.desc:1 (an empty flag in flags=)"},
        bad_case{"EspFlagOnDos", "linux 100 flags=esp\n", errc::bad_column, "t.desc:1 (flag esp with label: dos)"},
        bad_case{"MountOnSwap", "swap 100 mount=/swap\n", errc::bad_column, "t.desc:1 (swap takes no mount=)"},
        bad_case{"SwapFsOnLinux", "linux 100 fs=swap\n", errc::bad_column, "t.desc:1 (fs=swap on linux)"},
        bad_case{"OtherFsOnSwap", "swap 100 fs=ext4\n", errc::bad_column, "t.desc:1 (fs=ext4 on swap)"},
        bad_case{"FsOnExtended", "extended 100 fs=ext4\n", errc::bad_column, "t.desc:1 (extended takes no fs=, mount=, label= or flags=)"},
        bad_case{"FsOnBios", "label: gpt\nbios 1 fs=ext4\n", errc::bad_column, "t.desc:2 (bios takes no fs= or mount=)"},
        bad_case{"SameMount", "linux 100 mount=/\nlinux 100 mount=/\n", errc::duplicate_mount,
                 "t.desc:2"},
        bad_case{"SameMountSpelledApart", "linux 1 mount=/boot\nlinux 1\nlinux 1 mount=//boot/\n",
                 errc::duplicate_mount, "t.desc:3"},
        bad_case{"WordAfterSize", "linux 100 extra\n", errc::bad_line, "t.desc:1"},
        bad_case{"LogicalAlone", "extended 100\nlogical\n", errc::bad_line, "t.desc:2"}));

TEST(DescRejectsMessage, UnknownType) {
    const auto d = parse("linux 3500\n\ntypezz 500\n", "sda.desc");

    ASSERT_FALSE(d.has_value());
    EXPECT_EQ(d.error().message(),
              "sda.desc:3: unknown partition type (use linux, swap, extended or typeXX; with "
              "label: gpt use linux, swap, esp, bios or a type GUID)");
}

TEST(DescRejectsMessage, BadSize) {
    const auto d = parse("linux 3.5G\n", "sda.desc");

    ASSERT_FALSE(d.has_value());
    EXPECT_EQ(d.error().message(),
              "sda.desc:1: bad partition size (use a whole number of MiB, a number with K, M, G "
              "or T, a percentage of the disk, or fill)");
}

TEST(DescRejectsMessage, FillNotLast) {
    const auto d = parse("linux fill\nswap 500\n", "sda.desc");

    ASSERT_FALSE(d.has_value());
    EXPECT_EQ(d.error().message(),
              "sda.desc:1: fill is allowed only on the last partition of its table (the primary "
              "partitions, or the logical ones)");
}

TEST(DescRejectsMessage, LogicalWithoutExtended) {
    const auto d = parse("logical linux 5\n", "sda.desc");

    ASSERT_FALSE(d.has_value());
    EXPECT_EQ(d.error().message(),
              "sda.desc:1: logical partition without an extended partition before it");
}

TEST(DescRejectsMessage, TwoExtended) {
    const auto d = parse("extended 5\nextended 5\n", "sda.desc");

    ASSERT_FALSE(d.has_value());
    EXPECT_EQ(d.error().message(), "sda.desc:2: second extended partition (a dos table holds one)");
}

TEST(DescRejectsMessage, TooManyPrimaries) {
    const auto d = parse("linux 1\nlinux 1\nlinux 1\nlinux 1\nswap 1\n", "sda.desc");

    ASSERT_FALSE(d.has_value());
    EXPECT_EQ(d.error().message(),
              "sda.desc:5: too many partitions (dos holds 4 primary and extended partitions, "
              "gpt 128 partitions)");
}

TEST(DescRejectsMessage, ExtendedOnGpt) {
    const auto d = parse("label: gpt\nextended fill\n", "sda.desc");

    ASSERT_FALSE(d.has_value());
    EXPECT_EQ(d.error().message(),
              "sda.desc:2: extended and logical partitions exist only with label: dos");
}

TEST(DescRejectsMessage, BadLabel) {
    const auto d = parse("label: msdos\n", "sda.desc");

    ASSERT_FALSE(d.has_value());
    EXPECT_EQ(d.error().message(),
              "sda.desc:1: bad label line (write label: dos or label: gpt, before the first "
              "partition)");
}

TEST(DescRejectsMessage, BadColumn) {
    const auto d = parse("linux 100 fs=ntfs\n", "sda.desc");

    ASSERT_FALSE(d.has_value());
    EXPECT_EQ(d.error().message(),
              "sda.desc:1 (fs=ntfs): bad column (each at most once: fs=ext2|ext3|ext4|xfs|btrfs|vfat|swap|"
              "jfs|reiserfs, mount=/absolute/path, label=name, flags=boot,esp,bios_grub; fs=swap "
              "only with swap, no mount for swap, nothing for extended)");
}

TEST(DescRejectsMessage, DuplicateMount) {
    const auto d = parse("linux 100 mount=/\nlinux fill mount=/\n", "sda.desc");

    ASSERT_FALSE(d.has_value());
    EXPECT_EQ(d.error().message(), "sda.desc:2: mount point already used by an earlier partition");
}

TEST(DescRejectsMessage, BadLine) {
    const auto d = parse("linux 100 root\n", "sda.desc");

    ASSERT_FALSE(d.has_value());
    EXPECT_EQ(d.error().message(),
              "sda.desc:1: not a partition line (expected [logical] TYPE SIZE [key=value]...)");
}

TEST(DescCategory, NamesItself) {
    EXPECT_STREQ(category().name(), "kaclone.desc");
    EXPECT_EQ(std::error_code(errc::does_not_fit).message(), "partition does not fit on the disk");
}

TEST(DescValidate, AcceptsParsedFile) {
    const desc_file d = parsed("linux 3500 fs=ext4 mount=/\nextended fill\nlogical swap 500\n");

    const auto ok = validate(d, "t.desc");

    EXPECT_TRUE(ok.has_value());
}

TEST(DescValidate, RejectsNonCanonicalType) {
    desc_file d;
    d.partitions.push_back(
        {placement::primary, "type83", size_spec::of_bytes(mib), "", "", "", {}, 7});

    const auto ok = validate(d, "hand");

    ASSERT_FALSE(ok.has_value());
    EXPECT_EQ(ok.error().code, errc::unknown_type);
    EXPECT_EQ(ok.error().where, "hand:7");
}

TEST(DescValidate, RejectsZeroBytes) {
    desc_file d;
    d.partitions.push_back(
        {placement::primary, "linux", size_spec::of_bytes(0), "", "", "", {}, 2});

    const auto ok = validate(d, "hand");

    ASSERT_FALSE(ok.has_value());
    EXPECT_EQ(ok.error().code, errc::bad_size);
    EXPECT_EQ(ok.error().where, "hand:2");
}

TEST(DescValidate, RejectsSizeBelowOneKiB) {
    desc_file d;
    d.partitions.push_back(
        {placement::primary, "linux", size_spec::of_bytes(512), "", "", "", {}, 1});

    const auto ok = validate(d, "hand");

    ASSERT_FALSE(ok.has_value());
    EXPECT_EQ(ok.error().code, errc::bad_size);
}

TEST(DescValidate, RejectsLabelWithBlank) {
    desc_file d;
    d.partitions.push_back(
        {placement::primary, "linux", size_spec::fill(), "", "", "my root", {}, 3});

    const auto ok = validate(d, "hand");

    ASSERT_FALSE(ok.has_value());
    EXPECT_EQ(ok.error().code, errc::bad_column);
    EXPECT_EQ(ok.error().where, "hand:3 (label=my root)");
}

TEST(DescValidate, RejectsUntidyMount) {
    desc_file d;
    d.partitions.push_back(
        {placement::primary, "linux", size_spec::fill(), "", "/boot/", "", {}, 1});

    const auto ok = validate(d, "hand");

    ASSERT_FALSE(ok.has_value());
    EXPECT_EQ(ok.error().code, errc::bad_column);
}

TEST(DescPrint, OldFilePrintsBackUnchanged) {
    const std::string text = "linux 3500\nextended fill\nlogical swap 500\nlogical linux fill\n";

    EXPECT_EQ(print(parsed(text)), text);
}

TEST(DescPrint, DropsCommentsAndBlanks) {
    const std::string text = "# node01\n\nlinux   3500   # root\n\tswap 500\n";

    EXPECT_EQ(print(parsed(text)), "linux 3500\nswap 500\n");
}

TEST(DescPrint, WritesSizesInMiBElseKiB) {
    const std::string text = "linux 20G\nlinux 4096K\nlinux 1536K\nlinux 10%\n";

    EXPECT_EQ(print(parsed(text)), "linux 20480\nlinux 4\nlinux 1536K\nlinux 10%\n");
}

TEST(DescPrint, WritesColumnsInFixedOrder) {
    const std::string text = "linux 100 flags=boot label=root mount=/ fs=ext4\n";

    EXPECT_EQ(print(parsed(text)), "linux 100 fs=ext4 mount=/ label=root flags=boot\n");
}

TEST(DescPrint, WritesLabelLineForGptAndExplicitDos) {
    EXPECT_EQ(print(parsed("label:gpt\nlinux fill\n")), "label: gpt\nlinux fill\n");
    EXPECT_EQ(print(parsed("label: dos\nlinux fill\n")), "label: dos\nlinux fill\n");
}

TEST(DescPrint, WritesGptLabelEvenWhenNotMarked) {
    desc_file d;
    d.table = table_kind::gpt;

    EXPECT_EQ(print(d), "label: gpt\n");
}

TEST(DescPrint, WritesTypesCanonically) {
    const std::string text = "type83 1\ntypeFD 2 flags=boot\ntypeb 3\n";

    EXPECT_EQ(print(parsed(text)), "linux 1\ntypefd 2 flags=boot\ntype0b 3\n");
}

TEST(DescPrintSize, SpellsEachKind) {
    EXPECT_EQ(print_size(size_spec::of_bytes(3500 * mib)), "3500");
    EXPECT_EQ(print_size(size_spec::of_bytes(1536 * 1024)), "1536K");
    EXPECT_EQ(print_size(size_spec::of_percent(25)), "25%");
    EXPECT_EQ(print_size(size_spec::fill()), "fill");
}

class DescRoundTrip : public ::testing::TestWithParam<const char*> {};

TEST_P(DescRoundTrip, PrintParsePrintIsIdentical) {
    const desc_file first = parsed(GetParam());
    const std::string printed = print(first);

    const auto again = parse(printed, "printed.desc");

    ASSERT_TRUE(again.has_value()) << again.error().message() << "\n" << printed;
    EXPECT_EQ(print(*again), printed);
    const auto third = parse(print(*again), "printed.desc");
    ASSERT_TRUE(third.has_value());
    EXPECT_EQ(*third, *again);
}

INSTANTIATE_TEST_SUITE_P(
    Desc, DescRoundTrip,
    ::testing::Values(
        "", "linux 3500\nextended fill\nlogical swap 500\nlogical linux fill\n",
        "# a comment only\n", "linux fill\n", "label: dos\nlinux 512M fs=xfs mount=/\n",
        "linux 1G fs=ext4 mount=/boot label=boot flags=boot\nswap 2G fs=swap\n"
        "extended fill\nlogical linux 30% fs=btrfs mount=/home\nlogical linux fill fs=ext3 "
        "mount=/srv//data/\n",
        "label: gpt\nbios 1M\nesp 512M fs=vfat mount=/boot/efi flags=esp,boot\n"
        "a19d880f-05fc-4d3b-a006-743f0f84911e 100 label=data\nlinux fill fs=ext4 mount=/\n",
        "typefd 4096K\ntypeFD 1536K\ntype7 5%\ntype0b 1T\n",
        "linux 100\nextended 2000\nlogical swap 500\nlinux 300 fs=jfs label=x=y\n"));

TEST(DescTypeCodes, MapsDosTypesToMbrBytes) {
    EXPECT_EQ(mbr_type("linux"), 0x83);
    EXPECT_EQ(mbr_type("swap"), 0x82);
    EXPECT_EQ(mbr_type("extended"), 0x05);
    EXPECT_EQ(mbr_type("typeef"), 0xef);
    EXPECT_EQ(mbr_type("esp"), 0);
}

TEST(DescTypeCodes, MapsGptTypesToGuids) {
    EXPECT_EQ(gpt_type_guid("linux"), "0FC63DAF-8483-4772-8E79-3D69D8477DE4");
    EXPECT_EQ(gpt_type_guid("swap"), "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F");
    EXPECT_EQ(gpt_type_guid("esp"), "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
    EXPECT_EQ(gpt_type_guid("bios"), "21686148-6449-6E6F-744E-656564454649");
    EXPECT_EQ(gpt_type_guid("A19D880F-05FC-4D3B-A006-743F0F84911E"),
              "A19D880F-05FC-4D3B-A006-743F0F84911E");
    EXPECT_EQ(gpt_type_guid("extended"), "");
}

}  // namespace
}  // namespace kaclone::desc
