// Splitting independent work items of unequal cost (sequences of different lengths) over the thread pool.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/thread_pool.h"

namespace hyrax::kernels {

/// Calls fn(i) once for every item i in [0, n), the items cut into one contiguous run per thread so that the runs'
/// summed cost(i) are about equal. Items must be independent: which thread runs an item never changes its result.
template <class Cost, class Fn>
void parallel_items(int64_t n, const Cost& cost, const Fn& fn) {
  if (n <= 0) return;
  const int64_t parts = std::min<int64_t>(thread_pool().size(), n);
  if (parts == 1) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::vector<int64_t> start(size_t(n) + 1, 0);  // start[i]: summed cost of the items before i
  for (int64_t i = 0; i < n; ++i) start[size_t(i) + 1] = start[size_t(i)] + std::max<int64_t>(cost(i), 1);
  const int64_t total = start[size_t(n)];
  parallel_for(parts, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      // Part b takes the items whose cost starts in [total·b/parts, total·(b+1)/parts).
      const auto lo = std::lower_bound(start.begin(), start.begin() + n, total * b / parts);
      const auto hi = std::lower_bound(start.begin(), start.begin() + n, total * (b + 1) / parts);
      for (auto it = lo; it != hi; ++it) fn(int64_t(it - start.begin()));
    }
  });
}

}  // namespace hyrax::kernels
