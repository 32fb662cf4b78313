// result<T>: the value of an operation or the error that stopped it, with the place it happened.
#pragma once

#include <string>
#include <system_error>
#include <utility>
#include <variant>

#include <kaclone/assert.hpp>

namespace kaclone {

// What went wrong (`code`) and where (`where`: "sda.desc:14", "node 3, stream 0, offset 4194304",
// "open /dev/sda"). `where` may be empty when the code says it all.
struct error {
    std::error_code code;
    std::string where;

    // "where: message" (or just the message when `where` is empty), for people to read.
    std::string message() const;
};

// An error from an errno value (or a negated io_uring `res`), converted once at the lowest layer.
error sys_error(int errno_value, std::string where);
// The same from the current `errno`.
error last_sys_error(std::string where);

// A value of type T or an error: the subset of std::expected<T, error> that kaclone uses, so it
// can become std::expected under C++23. Accessing the value of an error result is a bug and
// stops the process (KACLONE_ASSERT); check has_value() first.
template <class T>
class [[nodiscard]] result {
public:
    using value_type = T;

    result(T value) : state_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit
    result(kaclone::error e) : state_(std::in_place_index<1>, std::move(e)) {}       // NOLINT: implicit

    bool has_value() const noexcept { return state_.index() == 0; }
    explicit operator bool() const noexcept { return has_value(); }

    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T&& operator*() && { return std::move(value()); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }

    T& value() & {
        KACLONE_ASSERT(has_value());
        return std::get<0>(state_);
    }
    const T& value() const& {
        KACLONE_ASSERT(has_value());
        return std::get<0>(state_);
    }
    T&& value() && {
        KACLONE_ASSERT(has_value());
        return std::move(std::get<0>(state_));
    }
    const kaclone::error& error() const& {
        KACLONE_ASSERT(!has_value());
        return std::get<1>(state_);
    }
    kaclone::error&& error() && {
        KACLONE_ASSERT(!has_value());
        return std::move(std::get<1>(state_));
    }

private:
    std::variant<T, kaclone::error> state_;
};

// Success with nothing to return, or an error.
template <>
class [[nodiscard]] result<void> {
public:
    using value_type = void;

    result() noexcept = default;
    result(kaclone::error e) : error_(std::move(e)), failed_(true) {}  // NOLINT: implicit

    bool has_value() const noexcept { return !failed_; }
    explicit operator bool() const noexcept { return has_value(); }

    const kaclone::error& error() const& {
        KACLONE_ASSERT(failed_);
        return error_;
    }
    kaclone::error&& error() && {
        KACLONE_ASSERT(failed_);
        return std::move(error_);
    }

private:
    kaclone::error error_;
    bool failed_ = false;
};

}  // namespace kaclone
