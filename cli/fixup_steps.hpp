// The post-clone fixup steps run in order with their log lines: shared by `kaclone fixup` and
// `kaclone join --disk`.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <kaclone/fixup.hpp>

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

}  // namespace kaclone::cli
