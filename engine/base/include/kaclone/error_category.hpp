// enum_category: the std::error_category behind each module's `errc` enum, and the base `errc`.
#pragma once

#include <string>
#include <system_error>

namespace kaclone {

// The category of one module's `enum class errc`: a name ("kaclone.desc") and a function that
// says in words when each value happens. Each module makes one static instance:
//
//     const std::error_category& category() noexcept {
//         static const enum_category<errc> instance{"kaclone.desc", describe};
//         return instance;
//     }
template <class Errc>
class enum_category final : public std::error_category {
public:
    using describe_fn = const char* (*)(Errc) noexcept;

    constexpr enum_category(const char* name, describe_fn describe) noexcept
        : name_(name), describe_(describe) {}

    const char* name() const noexcept override { return name_; }
    std::string message(int value) const override { return describe_(static_cast<Errc>(value)); }

private:
    const char* name_;
    describe_fn describe_;
};

// Failures of the base module itself. Values are only ever appended.
enum class errc {
    bad_number = 1,   // a size, count or duration does not start with a number
    bad_unit,         // the number is followed by a unit that is not known
    out_of_range,     // the value does not fit (overflow, or outside the caller's limits)
    not_implemented,  // the feature is not built yet
};

const std::error_category& category() noexcept;
std::error_code make_error_code(errc e) noexcept;

}  // namespace kaclone

template <>
struct std::is_error_code_enum<kaclone::errc> : std::true_type {};
