// The fixup steps in order (see fixup_steps.hpp).
#include "fixup_steps.hpp"

#include <algorithm>
#include <sstream>

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

std::vector<std::string> split_words(const std::string& text) {
    std::istringstream in(text);
    std::vector<std::string> out;
    for (std::string w; in >> w;) out.push_back(w);
    return out;
}

result<fixup::hostname_entry> name_from_hostnames(std::string_view text, std::string_view file_name, fixup::facts& facts) {
    auto entries = fixup::parse_hostnames(text, file_name);
    if (!entries) return std::move(entries).error();
    auto entry = fixup::match_hostname(*entries, fixup::local_addresses(), file_name);
    if (!entry) return std::move(entry).error();
    facts.hostname = entry->name;
    for (std::size_t i = 0; i < entries->size(); ++i)
        if ((*entries)[i].line == entry->line) facts.node_index = static_cast<int>(i);
    return entry;
}

std::string failed_steps_text(const std::vector<std::string>& failures) {
    std::string list;
    for (const auto& f : failures) list += (list.empty() ? "" : ", ") + f;
    return std::to_string(failures.size()) + " step" + (failures.size() == 1 ? "" : "s") + " failed: " + list;
}

}  // namespace kaclone::cli
