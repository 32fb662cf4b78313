// A test driver for the image module's raw copies and boot code, which have no CLI yet:
// tests/e2e/image_loop.sh runs it on loop devices.
//
//   image_raw_tool raw IN OUT [hole|discard|write]   copy_raw (default hole); prints the stats
//   image_raw_tool mbr DRIVE_IN DRIVE_OUT             read_mbr + write_mbr
//   image_raw_tool mbr-file FILE DRIVE_OUT            read_mbr_file + write_mbr
//
// Exit 0 on success, 1 with "image_raw_tool: MESSAGE" on stderr on failure, 2 on bad usage.
#include <kaclone/image.hpp>

#include <cstdio>
#include <string>
#include <string_view>

#include <fcntl.h>

#include <kaclone/unique_fd.hpp>

namespace {

using namespace kaclone;

int usage() {
    std::fputs("usage: image_raw_tool raw IN OUT [hole|discard|write]\n"
               "       image_raw_tool mbr DRIVE_IN DRIVE_OUT\n"
               "       image_raw_tool mbr-file FILE DRIVE_OUT\n",
               stderr);
    return 2;
}

int failed(const std::string& message) {
    std::fprintf(stderr, "image_raw_tool: %s\n", message.c_str());
    return 1;
}

int raw(const char* in_path, const char* out_path, std::string_view mode) {
    image::zero_blocks zeros = image::zero_blocks::hole;
    if (mode == "discard") zeros = image::zero_blocks::discard;
    else if (mode == "write") zeros = image::zero_blocks::write;
    else if (mode != "hole") return usage();
    auto in = open_fd(in_path, O_RDONLY);
    if (!in) return failed(in.error().message());
    auto out = open_fd(out_path, O_RDWR | O_CREAT, 0644);
    if (!out) return failed(out.error().message());
    auto copied = image::copy_raw(in->get(), out->get(), zeros);
    if (!copied) return failed(copied.error().message());
    std::printf("copied %llu bytes, %llu zero blocks not written as data\n", static_cast<unsigned long long>(copied->bytes),
                static_cast<unsigned long long>(copied->zero_blocks));
    return 0;
}

enum class boot_code_from { drive, file };

int mbr(const char* from, const char* drive_path, boot_code_from source) {
    auto code = [&]() -> result<image::mbr_boot_code> {
        if (source == boot_code_from::file) return image::read_mbr_file(from);
        auto in = open_fd(from, O_RDONLY);
        if (!in) return std::move(in).error();
        return image::read_mbr(in->get());
    }();
    if (!code) return failed(code.error().message());
    // The drive is opened only once the boot code is known good: nothing is written otherwise.
    auto drive = open_fd(drive_path, O_RDWR);
    if (!drive) return failed(drive.error().message());
    if (auto written = image::write_mbr(drive->get(), *code); !written) return failed(written.error().message());
    std::printf("wrote %zu bytes of boot code to %s\n", code->size(), drive_path);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string_view command = argc > 1 ? argv[1] : "";
    if (command == "raw" && (argc == 4 || argc == 5)) return raw(argv[2], argv[3], argc == 5 ? argv[4] : "hole");
    if (command == "mbr" && argc == 4) return mbr(argv[2], argv[3], boot_code_from::drive);
    if (command == "mbr-file" && argc == 4) return mbr(argv[2], argv[3], boot_code_from::file);
    return usage();
}
