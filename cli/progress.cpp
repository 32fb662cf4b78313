// progress_line and summary figures.
#include "progress.hpp"

#include <cstdio>

#include <sys/resource.h>
#include <unistd.h>

#include <kaclone/units.hpp>

namespace kaclone::cli {

progress_line::progress_line(std::string verb, std::uint64_t total_bytes)
    : verb_(std::move(verb)), total_(total_bytes), tty_(::isatty(2) == 1) {}

void progress_line::update(std::uint64_t bytes) {
    if (!tty_) return;
    const double elapsed = seconds(std::chrono::steady_clock::now() - start_);
    const double rate = elapsed > 0 ? static_cast<double>(bytes) / elapsed : 0;
    std::string line = verb_ + " " + format_bytes(bytes);
    if (total_ > 0) {
        line += " of " + format_bytes(total_) + " (" + std::to_string(bytes * 100 / total_) + "%)";
        if (rate > 0 && bytes < total_)
            line += ", ETA " + std::to_string(static_cast<long>(static_cast<double>(total_ - bytes) / rate)) + " s";
    }
    line += ", " + format_rate(rate);
    std::fprintf(stderr, "\r\033[K%s", line.c_str());
    shown_ = true;
}

void progress_line::clear() {
    if (shown_) std::fputs("\r\033[K", stderr);
    shown_ = false;
}

std::uint64_t peak_rss_bytes() {
    rusage usage{};
    ::getrusage(RUSAGE_SELF, &usage);
    return static_cast<std::uint64_t>(usage.ru_maxrss) * 1024;
}

double seconds(std::chrono::steady_clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace kaclone::cli
