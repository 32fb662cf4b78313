// unique_fd and open_fd.
#include <kaclone/unique_fd.hpp>

#include <fcntl.h>
#include <unistd.h>

namespace kaclone {

void unique_fd::reset(int fd) noexcept {
    if (fd_ >= 0 && fd_ != fd) ::close(fd_);
    fd_ = fd;
}

result<unique_fd> open_fd(const std::filesystem::path& path, int flags, mode_t mode) {
    const int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
    if (fd < 0) return last_sys_error("open " + path.string());
    return unique_fd{fd};
}

}  // namespace kaclone
