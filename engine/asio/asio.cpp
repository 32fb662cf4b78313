// The one translation unit that compiles standalone Asio's implementation
// (ASIO_SEPARATE_COMPILATION): everything else includes only its declarations.
#include <asio/impl/src.hpp>
