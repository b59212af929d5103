#include "runtime/request.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "tokenizer/tokenizer.h"

namespace hyrax {

const char* finish_name(Finish f) {
  switch (f) {
    case Finish::Length: return "length";
    case Finish::Stop: return "stop";
    case Finish::Cancelled: return "cancelled";
    case Finish::Error: return "error";
    case Finish::None: break;
  }
  return "";
}

std::optional<RequestEvent> RequestHandle::next(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!cv_.wait_for(lock, timeout, [&] { return !events_.empty(); })) return std::nullopt;
  RequestEvent e = std::move(events_.front());
  events_.pop_front();
  return e;
}

void RequestHandle::cancel() {
  if (cancelled_.exchange(true, std::memory_order_acq_rel)) return;
  std::function<void()> wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    wake = wake_;
  }
  if (wake) wake();
}

bool RequestHandle::finished() const {
  std::lock_guard<std::mutex> lock(mu_);
  return finished_;
}

void RequestHandle::push(RequestEvent e) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return;
    if (std::holds_alternative<RequestDone>(e) || std::holds_alternative<RequestFailed>(e)) finished_ = true;
    events_.push_back(std::move(e));
  }
  cv_.notify_all();
}

TextTracker::TextTracker(const Tokenizer* tokenizer, const std::vector<std::string>* stops, bool skip_special,
                         bool include_stop)
    : tok_(tokenizer), stops_(stops), include_stop_(include_stop) {
  HYRAX_CHECK(tok_ || !stops_ || stops_->empty(), "stop strings need a tokenizer");
  if (tok_) dec_.emplace(*tok_, skip_special);
}

std::string TextTracker::push(int32_t id, bool& stopped, std::string& stop_string) {
  stopped = false;
  if (!tok_) return {};
  text_ += dec_->push(id);
  if (!stops_ || stops_->empty()) {
    std::string out = text_.substr(emitted_);
    emitted_ = text_.size();
    return out;
  }
  // A stop string cannot start inside text already handed out: whatever could have begun one was held back.
  const std::string_view pending = std::string_view(text_).substr(emitted_);
  const StopMatch m = find_stop(pending, *stops_);
  if (m.pos != std::string::npos) {
    stopped = true;
    stop_string = (*stops_)[m.stop_index];
    const size_t end = m.pos + (include_stop_ ? stop_string.size() : 0);
    std::string out(pending.substr(0, end));
    emitted_ = text_.size();
    return out;
  }
  const size_t ready = pending.size() - m.hold_back;
  std::string out(pending.substr(0, ready));
  emitted_ += ready;
  return out;
}

std::string TextTracker::finish() {
  if (!tok_) return {};
  text_ += dec_->flush();
  std::string out = text_.substr(emitted_);
  emitted_ = text_.size();
  return out;
}

TokenLogprob token_logprob(const float* logits, int64_t vocab, int32_t id, int32_t top_k) {
  HYRAX_CHECK(id >= 0 && id < vocab, "token id ", id);
  float mx = logits[0];
  for (int64_t i = 1; i < vocab; ++i) mx = std::max(mx, logits[i]);
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(double(logits[i]) - double(mx));
  const double log_z = double(mx) + std::log(sum);
  TokenLogprob t;
  t.id = id;
  t.logprob = double(logits[id]) - log_z;
  if (top_k > 0) {
    // A bounded min-heap of the k best (logit, -id): one pass over the row, no copy of it.
    const size_t k = size_t(std::min<int64_t>(top_k, vocab));
    auto better = [](const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
      return a.first > b.first || (a.first == b.first && a.second < b.second);
    };
    std::vector<std::pair<float, int32_t>> heap;
    heap.reserve(k + 1);
    for (int64_t i = 0; i < vocab; ++i) {
      const std::pair<float, int32_t> c{logits[i], int32_t(i)};
      if (heap.size() < k) {
        heap.push_back(c);
        std::push_heap(heap.begin(), heap.end(), better);
      } else if (better(c, heap.front())) {
        std::pop_heap(heap.begin(), heap.end(), better);
        heap.back() = c;
        std::push_heap(heap.begin(), heap.end(), better);
      }
    }
    std::sort(heap.begin(), heap.end(), better);
    t.top.reserve(heap.size());
    for (const auto& [v, i] : heap) t.top.emplace_back(i, double(v) - log_z);
  }
  return t;
}

}  // namespace hyrax
