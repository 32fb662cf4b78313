// error messages and the conversion of errno values into errors.
#include <kaclone/result.hpp>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

namespace kaclone {

std::string error::message() const {
    std::string text = code.message();
    if (where.empty()) return text;
    return where + ": " + text;
}

error sys_error(int errno_value, std::string where) {
    return error{std::error_code(errno_value, std::system_category()), std::move(where)};
}

error last_sys_error(std::string where) { return sys_error(errno, std::move(where)); }

namespace detail {
void assert_failed(const char* expression, const char* file, int line) noexcept {
    std::fprintf(stderr, "kaclone: internal error: %s:%d: assertion '%s' failed\n", file, line,
                 expression);
    std::abort();
}
}  // namespace detail

}  // namespace kaclone
