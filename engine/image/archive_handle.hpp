// Owners of libarchive handles and entries for the image module; private to engine/image.
#pragma once

#include <memory>
#include <string>

#include <archive.h>
#include <archive_entry.h>

namespace kaclone::image::detail {

struct read_archive_free {
    void operator()(archive* a) const noexcept { archive_read_free(a); }
};
struct write_archive_free {
    void operator()(archive* a) const noexcept { archive_write_free(a); }
};
struct entry_free {
    void operator()(archive_entry* e) const noexcept { archive_entry_free(e); }
};
struct linkresolver_free {
    void operator()(archive_entry_linkresolver* r) const noexcept { archive_entry_linkresolver_free(r); }
};

// A handle made by archive_read_new or archive_read_disk_new (both freed by archive_read_free).
using read_archive = std::unique_ptr<archive, read_archive_free>;
// A handle made by archive_write_new or archive_write_disk_new.
using write_archive = std::unique_ptr<archive, write_archive_free>;
using entry_ptr = std::unique_ptr<archive_entry, entry_free>;
using linkresolver_ptr = std::unique_ptr<archive_entry_linkresolver, linkresolver_free>;

// libarchive's last message for `a`, or `fallback` when it has none.
inline std::string archive_message(archive* a, const char* fallback = "libarchive error") {
    const char* text = archive_error_string(a);
    return text != nullptr ? text : fallback;
}

}  // namespace kaclone::image::detail
