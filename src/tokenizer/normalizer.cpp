#include "tokenizer/normalizer.h"

#include <algorithm>
#include <unordered_map>
#include <vector>

#include "tokenizer/unicode.h"

namespace hyrax::tok {

namespace {

using namespace nfc_detail;

// Hangul syllables compose and decompose arithmetically (Unicode 3.12).
constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

struct Tables {
  std::unordered_map<uint32_t, uint8_t> ccc;
  std::unordered_map<uint32_t, std::pair<uint32_t, uint32_t>> decomposition;  // cp -> (offset, length)
  std::unordered_map<uint64_t, uint32_t> composition;                         // (first << 32 | second) -> cp
  std::vector<uint8_t> interesting;  // [cp >> 7] has a character that quick check must not pass
  Tables() {
    interesting.assign(0x110000 >> 7, 0);
    auto mark = [&](uint32_t cp) { interesting[cp >> 7] = 1; };
    for (size_t i = 0; i < kNumCccRuns; ++i)
      for (uint32_t cp = kCccRuns[i].first; cp <= kCccRuns[i].last; ++cp) {
        ccc[cp] = kCccRuns[i].ccc;
        mark(cp);
      }
    for (size_t i = 0; i < kNumDecompositions; ++i) {
      decomposition[kDecompositions[i].cp] = {kDecompositions[i].offset, kDecompositions[i].length};
      mark(kDecompositions[i].cp);
    }
    for (size_t i = 0; i < kNumCompositions; ++i) {
      composition[(uint64_t(kCompositions[i].first) << 32) | kCompositions[i].second] = kCompositions[i].composite;
      mark(kCompositions[i].second);
    }
    for (uint32_t cp = kLBase; cp < kLBase + kLCount; ++cp) mark(cp);
    for (uint32_t cp = kVBase; cp < kVBase + kVCount; ++cp) mark(cp);
    for (uint32_t cp = kTBase; cp < kTBase + kTCount; ++cp) mark(cp);
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

uint8_t combining_class(const Tables& t, uint32_t cp) {
  auto it = t.ccc.find(cp);
  return it == t.ccc.end() ? 0 : it->second;
}

void decompose(const Tables& t, uint32_t cp, std::vector<uint32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    uint32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount) out.push_back(kTBase + s % kTCount);
    return;
  }
  auto it = t.decomposition.find(cp);
  if (it == t.decomposition.end()) {
    out.push_back(cp);
    return;
  }
  out.insert(out.end(), kDecompositionData + it->second.first, kDecompositionData + it->second.first + it->second.second);
}

uint32_t compose_pair(const Tables& t, uint32_t a, uint32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase && b < kTBase + kTCount)
    return a + (b - kTBase);
  auto it = t.composition.find((uint64_t(a) << 32) | b);
  return it == t.composition.end() ? 0 : it->second;
}

}  // namespace

bool nfc_quick_check(std::string_view text) {
  const Tables& t = tables();
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  size_t i = 0, n = text.size();
  while (i < n) {
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    uint32_t cp;
    i += unicode::decode_valid(p + i, &cp);
    if (t.interesting[cp >> 7] || (cp >= kSBase && cp < kSBase + kSCount)) return false;
  }
  return true;
}

std::string nfc(std::string_view text) {
  if (nfc_quick_check(text)) return std::string(text);
  const Tables& t = tables();
  // 1. Full canonical decomposition.
  std::vector<uint32_t> cps;
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  for (size_t i = 0; i < text.size();) {
    uint32_t cp;
    i += unicode::decode_valid(p + i, &cp);
    decompose(t, cp, cps);
  }
  // 2. Canonical ordering: stable sort of each run of non-starters by combining class.
  for (size_t i = 0; i < cps.size();) {
    if (combining_class(t, cps[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < cps.size() && combining_class(t, cps[j]) != 0) ++j;
    std::stable_sort(cps.begin() + long(i), cps.begin() + long(j),
                     [&](uint32_t a, uint32_t b) { return combining_class(t, a) < combining_class(t, b); });
    i = j;
  }
  // 3. Canonical composition: each character joins the last starter unless blocked.
  std::vector<uint32_t> out;
  out.reserve(cps.size());
  long starter = -1;
  uint8_t last_ccc = 0;
  for (uint32_t cp : cps) {
    uint8_t c = combining_class(t, cp);
    if (starter >= 0) {
      bool blocked = !out.empty() && size_t(starter) + 1 < out.size() && (last_ccc == 0 || last_ccc >= c);
      if (!blocked) {
        if (uint32_t comp = compose_pair(t, out[size_t(starter)], cp)) {
          out[size_t(starter)] = comp;
          continue;
        }
      }
    }
    if (c == 0) {
      starter = long(out.size());
      last_ccc = 0;
    } else {
      last_ccc = c;
    }
    out.push_back(cp);
  }
  std::string s;
  s.reserve(text.size());
  for (uint32_t cp : out) unicode::append_utf8(s, cp);
  return s;
}

}  // namespace hyrax::tok
