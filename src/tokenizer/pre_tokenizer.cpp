#include "tokenizer/pre_tokenizer.h"

#include <deque>
#include <nlohmann/json.hpp>

#include "core/check.h"

namespace hyrax::tok {

namespace {

SplitBehavior parse_behavior(const std::string& s) {
  if (s == "Removed") return SplitBehavior::kRemoved;
  if (s == "Isolated") return SplitBehavior::kIsolated;
  if (s == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (s == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (s == "Contiguous") return SplitBehavior::kContiguous;
  fail("tokenizer.json: pre_tokenizer Split has unknown behavior \"", s, "\"");
}

const char* behavior_name(SplitBehavior b) {
  switch (b) {
    case SplitBehavior::kRemoved: return "Removed";
    case SplitBehavior::kIsolated: return "Isolated";
    case SplitBehavior::kMergedWithPrevious: return "MergedWithPrevious";
    case SplitBehavior::kMergedWithNext: return "MergedWithNext";
    case SplitBehavior::kContiguous: return "Contiguous";
  }
  return "?";
}

void add_steps(const nlohmann::json& j, bool force_pcre2, std::vector<PreTokenizerStep>& steps) {
  if (j.is_null()) return;
  HYRAX_REQUIRE(j.is_object() && j.contains("type"), "tokenizer.json: pre_tokenizer must be an object with a type");
  std::string type = j.at("type").get<std::string>();
  if (type == "Sequence") {
    for (const auto& sub : j.at("pretokenizers")) add_steps(sub, force_pcre2, steps);
    return;
  }
  PreTokenizerStep step;
  if (type == "Split") {
    step.kind = PreTokenizerStep::kSplit;
    const auto& pat = j.at("pattern");
    if (pat.contains("Regex")) {
      step.regex = SplitRegex::compile(pat.at("Regex").get<std::string>(), force_pcre2);
    } else if (pat.contains("String")) {
      step.regex = SplitRegex::literal(pat.at("String").get<std::string>());
    } else {
      fail("tokenizer.json: pre_tokenizer Split pattern must have \"Regex\" or \"String\"");
    }
    step.behavior = parse_behavior(j.at("behavior").get<std::string>());
    step.invert = j.value("invert", false);
  } else if (type == "ByteLevel") {
    step.kind = PreTokenizerStep::kByteLevel;
    step.add_prefix_space = j.value("add_prefix_space", true);
    if (j.value("use_regex", true)) step.regex = SplitRegex::compile(kGpt2Pattern, force_pcre2);
    step.behavior = SplitBehavior::kIsolated;
  } else {
    fail("tokenizer.json: pre_tokenizer type \"", type,
         "\" is not supported (hyrax supports Sequence, Split and ByteLevel)");
  }
  steps.push_back(std::move(step));
}

// HF's NormalizedString::split: the regex's (span, is_match) cover of `text`, then the behaviour.
void apply_split(const PreTokenizerStep& step, std::string_view text, std::vector<std::string_view>& out) {
  struct Span {
    size_t s, e;
    bool match;
  };
  thread_local std::vector<Span> spans, merged;
  spans.clear();
  if (text.empty()) {
    spans.push_back({0, 0, false});
  } else {
    size_t prev = 0;
    for_each_match(*step.regex, text, [&](size_t s, size_t e) {
      if (prev != s) spans.push_back({prev, s, false});
      spans.push_back({s, e, true});
      prev = e;
    });
    if (prev != text.size()) spans.push_back({prev, text.size(), false});
  }
  if (step.invert)
    for (Span& sp : spans) sp.match = !sp.match;
  // For every behaviour, `merged` holds (span, remove).
  merged.clear();
  bool previous_match = false;
  switch (step.behavior) {
    case SplitBehavior::kIsolated:
      for (const Span& sp : spans) merged.push_back({sp.s, sp.e, false});
      break;
    case SplitBehavior::kRemoved:
      merged = spans;  // `match` now means "remove"
      break;
    case SplitBehavior::kContiguous:
      for (const Span& sp : spans) {
        if (sp.match == previous_match && !merged.empty())
          merged.back().e = sp.e;
        else
          merged.push_back({sp.s, sp.e, false});
        previous_match = sp.match;
      }
      break;
    case SplitBehavior::kMergedWithPrevious:
      for (const Span& sp : spans) {
        if (sp.match && !previous_match && !merged.empty())
          merged.back().e = sp.e;
        else
          merged.push_back({sp.s, sp.e, false});
        previous_match = sp.match;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (size_t k = spans.size(); k-- > 0;) {
        const Span& sp = spans[k];
        if (sp.match && !previous_match && !merged.empty())
          merged.back().s = sp.s;
        else
          merged.push_back({sp.s, sp.e, false});
        previous_match = sp.match;
      }
      std::reverse(merged.begin(), merged.end());
      break;
  }
  for (const Span& sp : merged)
    if (!sp.match && sp.e > sp.s) out.push_back(text.substr(sp.s, sp.e - sp.s));
}

}  // namespace

PreTokenizer PreTokenizer::from_json(const nlohmann::json& j, bool force_pcre2) {
  PreTokenizer p;
  add_steps(j, force_pcre2, p.steps_);
  // The fast path: exactly one step that splits, no prefix space, and a behaviour whose pieces are the regex's
  // matches (Removed + invert) or its matches and gaps (Isolated).
  const PreTokenizerStep* splitting = nullptr;
  int n_splitting = 0;
  bool prefix = false;
  for (const auto& s : p.steps_) {
    if (s.regex) {
      splitting = &s;
      ++n_splitting;
    }
    prefix |= s.kind == PreTokenizerStep::kByteLevel && s.add_prefix_space;
  }
  if (n_splitting == 1 && !prefix) {
    if (splitting->behavior == SplitBehavior::kIsolated) {
      p.fast_regex_ = splitting->regex.get();
      p.fast_keep_gaps_ = true;
    } else if (splitting->behavior == SplitBehavior::kRemoved && splitting->invert) {
      p.fast_regex_ = splitting->regex.get();
      p.fast_keep_gaps_ = false;
    }
  }
  if (n_splitting == 0 && !prefix) p.steps_.clear();  // ByteLevel without regex or prefix: nothing to split
  return p;
}

PreTokenizer PreTokenizer::from_pattern(const std::string& pattern, bool force_pcre2) {
  nlohmann::json j = {{"type", "Split"}, {"pattern", {{"Regex", pattern}}}, {"behavior", "Isolated"}, {"invert", false}};
  return from_json(j, force_pcre2);
}

void PreTokenizer::split_general(std::string_view text, std::vector<std::string_view>& out) const {
  thread_local std::deque<std::string> owned;  // prefixed copies; stable addresses
  thread_local std::vector<std::string_view> next;
  owned.clear();
  out.clear();
  out.push_back(text);
  for (const auto& step : steps_) {
    next.clear();
    for (std::string_view piece : out) {
      if (step.kind == PreTokenizerStep::kByteLevel && step.add_prefix_space && piece.substr(0, 1) != " ") {
        std::string& prefixed = owned.emplace_back();
        prefixed.reserve(piece.size() + 1);
        prefixed.push_back(' ');
        prefixed.append(piece.data(), piece.size());
        piece = prefixed;
      }
      if (step.regex)
        apply_split(step, piece, next);
      else if (!piece.empty())
        next.push_back(piece);
    }
    out.swap(next);
  }
}

std::string PreTokenizer::describe() const {
  if (steps_.empty()) return "none";
  std::string s;
  for (const auto& step : steps_) {
    if (!s.empty()) s += " + ";
    if (step.kind == PreTokenizerStep::kByteLevel) {
      s += "ByteLevel(";
      s += step.regex ? step.regex->engine() : "no regex";
      if (step.add_prefix_space) s += ", prefix space";
      s += ")";
    } else {
      s += "Split(" + step.regex->engine() + ", " + behavior_name(step.behavior) + (step.invert ? ", invert" : "") + ")";
    }
  }
  return s;
}

}  // namespace hyrax::tok
