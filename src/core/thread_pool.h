// A fixed pool of worker threads for data-parallel loops. Work is split statically, so that which thread computes
// which index never changes the arithmetic: results are the same for any thread count.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace hyrax {

class ThreadPool {
 public:
  /// n_threads <= 0 means one per hardware thread.
  explicit ThreadPool(int n_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return int(workers_.size()) + 1; }

  /// Calls fn(begin, end) over [0, n) split into contiguous ranges of at least `grain` items, one per thread;
  /// the calling thread takes part. Blocks until every range is done; rethrows the first exception.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void worker_loop(int index);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable start_cv_, done_cv_;
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t job_n_ = 0;
  int job_parts_ = 0;
  uint64_t generation_ = 0;
  int pending_ = 0;
  std::exception_ptr error_;
  bool stop_ = false;
};

/// The process-wide pool used by CPU kernels; set_num_threads() rebuilds it (call before any work starts).
ThreadPool& thread_pool();
void set_num_threads(int n);

/// Shorthand for thread_pool().parallel_for.
inline void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  thread_pool().parallel_for(n, grain, fn);
}

}  // namespace hyrax
