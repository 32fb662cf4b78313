// The fixup steps in order (see fixup_steps.hpp).
#include "fixup_steps.hpp"

#include <algorithm>

namespace kaclone::cli {
namespace {

bool contains(const std::vector<std::string>& names, const std::string& name) {
    return std::find(names.begin(), names.end(), name) != names.end();
}

}  // namespace

std::vector<std::string> run_fixup_steps(const fixup::facts& facts, const fixup_run& run) {
    fixup::apply_options options;
    options.mode = run.mode;
    options.log = run.say;
    std::vector<std::string> failures;
    for (const auto& name : fixup::step_names()) {
        if (contains(run.skip, name)) {
            run.say(name + ": skipped: --skip " + name);
            continue;
        }
        if (!run.only.empty() && !contains(run.only, name)) {
            run.say(name + ": skipped: not in --only");
            continue;
        }
        auto plan = fixup::plan_step(name, facts);
        if (!plan) {
            run.complain(name + ": " + plan.error().message());
            failures.push_back(name);
            continue;
        }
        if (!plan->skipped.empty()) {
            run.say(name + ": skipped: " + plan->skipped);
            continue;
        }
        for (const auto& note : plan->notes) run.say(name + ": " + note);
        if (plan->empty()) {
            run.say(name + ": nothing to change");
            continue;
        }
        if (auto ok = fixup::apply(*plan, facts.target, options); !ok) {
            run.complain(name + ": " + ok.error().message());
            failures.push_back(name);
        }
    }
    return failures;
}

std::string failed_steps_text(const std::vector<std::string>& failures) {
    std::string list;
    for (const auto& f : failures) list += (list.empty() ? "" : ", ") + f;
    return std::to_string(failures.size()) + " step" + (failures.size() == 1 ? "" : "s") + " failed: " + list;
}

}  // namespace kaclone::cli
