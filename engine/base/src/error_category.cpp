// The base module's error category.
#include <kaclone/error_category.hpp>

namespace kaclone {
namespace {

const char* describe(errc e) noexcept {
    switch (e) {
        case errc::bad_number: return "not a number";
        case errc::bad_unit: return "unknown unit";
        case errc::out_of_range: return "value out of range";
        case errc::not_implemented: return "not implemented yet";
    }
    return "unknown kaclone error";
}

}  // namespace

const std::error_category& category() noexcept {
    static const enum_category<errc> instance{"kaclone", describe};
    return instance;
}

std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), category()}; }

}  // namespace kaclone
