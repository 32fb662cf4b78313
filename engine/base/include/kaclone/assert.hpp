// KACLONE_ASSERT: invariants that hold unless kaclone itself has a bug; checked in every build.
#pragma once

namespace kaclone::detail {
[[noreturn]] void assert_failed(const char* expression, const char* file, int line) noexcept;
}

// Stops the process with the expression and its place when `expr` is false. Not for input
// checks: bad input is an error result, never an assertion.
#define KACLONE_ASSERT(expr) \
    ((expr) ? static_cast<void>(0) : ::kaclone::detail::assert_failed(#expr, __FILE__, __LINE__))
