// The post-clone fixup steps run in order with their log lines: shared by `kaclone fixup` and
// `kaclone join --disk`.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <kaclone/fixup.hpp>
#include <kaclone/result.hpp>

namespace kaclone::cli {

struct fixup_run {
    std::vector<std::string> skip;  // step names not to run
    std::vector<std::string> only;  // when not empty, the only steps to run
    fixup::dry_run mode = fixup::dry_run::no;
    std::function<void(const std::string&)> say;       // what a step does or why it is skipped
    std::function<void(const std::string&)> complain;  // "STEP: why it failed"
};

// Plans and applies every step of fixup::step_names() in order for `facts`; a failing step
// does not stop the ones after it. Returns the names of the steps that failed.
std::vector<std::string> run_fixup_steps(const fixup::facts& facts, const fixup_run& run);

// "2 steps failed: initramfs, hooks".
std::string failed_steps_text(const std::vector<std::string>& failures);

// --initrd-args "..." as separate arguments (split at blanks).
std::vector<std::string> split_words(const std::string& text);

// Names this node from a hostnames file's `text` (`file_name` in errors): its line's name into
// `facts.hostname` and the line's position among the entries (from 0) into `facts.node_index`.
// Returns the line it matched; errors as fixup::parse_hostnames and fixup::match_hostname.
result<fixup::hostname_entry> name_from_hostnames(std::string_view text, std::string_view file_name, fixup::facts& facts);

}  // namespace kaclone::cli
