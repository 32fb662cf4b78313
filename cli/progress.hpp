// Progress lines on a terminal and the figures of the final summaries.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include <kaclone/relay.hpp>

namespace kaclone::cli {

// Rewrites one status line on stderr once a second when stderr is a terminal; silent otherwise.
class progress_line {
public:
    progress_line(std::string verb, std::uint64_t total_bytes);
    ~progress_line() { clear(); }
    void update(std::uint64_t bytes);
    void clear();

private:
    std::string verb_;
    std::uint64_t total_;
    bool tty_;
    bool shown_ = false;
    std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

// Peak resident memory of this process in bytes (getrusage).
std::uint64_t peak_rss_bytes();
double seconds(std::chrono::steady_clock::duration d);

}  // namespace kaclone::cli
