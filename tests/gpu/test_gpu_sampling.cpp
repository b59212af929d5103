// GPU sampling (kernels/sampling/sampling.cu) against the reference on fresh random logits: vocabularies from 7 to
// Olmo's 100352, up to 64 rows with their own parameters in one call, ties, -inf entries, temperatures 0.05…5,
// top-k 1/50/V, top-p 0.01…0.99, min-p. Greedy rows match exactly. A sampled token may differ only where the draw
// (or a top-p / min-p threshold) lies within 1e-9 of a boundary, where the float64 sums of the reference and the
// kernel round differently; such rows are counted apart, every other row must match exactly. Logprobs within 1e-5.
// A row alone (at another alignment) gives bitwise the same token and logprob as among others.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "gpu/gpu_test_util.h"
#include "kernels/sampling/sampling.h"
#include "kernels/sampling/sampling_cuda.h"

using namespace hyrax;
using namespace hyrax::gputest;
using kernels::SampleRow;

namespace {

constexpr double kBoundary = 1e-9;

/// The reference's algorithm (sampling_ref.cpp) once more, returning how close its decisions came to a boundary:
/// the smallest relative distance of the draw to a CDF step, of top-p's running sum to top_p, of min-p's cut to
/// its floor.
double boundary_margin(const float* x, int64_t V, const SampleRow& s) {
  if (s.temperature == 0.0f) return INFINITY;
  std::vector<std::pair<float, int32_t>> c(static_cast<size_t>(V));
  for (int64_t i = 0; i < V; ++i) c[size_t(i)] = {x[i] / s.temperature, int32_t(i)};
  std::sort(c.begin(), c.end(), [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  });
  size_t n = s.top_k > 0 && s.top_k < V ? size_t(s.top_k) : size_t(V);
  std::vector<double> prob(n);
  double total = 0;
  for (size_t i = 0; i < n; ++i) total += prob[i] = std::exp(double(c[i].first) - double(c[0].first));
  for (auto& p : prob) p /= total;
  double margin = INFINITY;
  if (s.top_p < 1.0f) {
    double acc = 0;
    size_t keep = 0;
    while (keep < n) {
      const double before = acc;
      acc += prob[keep++];
      margin = std::min(margin, std::fabs(acc - double(s.top_p)));
      if (acc >= double(s.top_p)) break;
      margin = std::min(margin, std::fabs(double(s.top_p) - before));
    }
    n = std::max<size_t>(keep, 1);
  }
  if (s.min_p > 0.0f) {
    const double floor = double(s.min_p) * prob[0];
    size_t keep = 1;
    while (keep < n && prob[keep] >= floor) ++keep;
    if (keep < n) margin = std::min(margin, std::fabs(prob[keep] - floor) / floor);
    if (keep > 1) margin = std::min(margin, std::fabs(prob[keep - 1] - floor) / floor);
    n = keep;
  }
  double mass = 0;
  for (size_t i = 0; i < n; ++i) mass += prob[i];
  const double u = s.u * mass;
  double acc = 0;
  for (size_t i = 0; i < n; ++i) {
    margin = std::min(margin, std::fabs(acc - u) / mass);
    acc += prob[i];
    margin = std::min(margin, std::fabs(acc - u) / mass);
    if (u < acc) break;
  }
  return margin;
}

enum class Dist { Normal, Spiky, Ties, NegInf, Flat };

std::vector<float> make_logits(Rng& rng, int64_t R, int64_t V, int64_t ld, Dist dist) {
  std::vector<float> x(size_t(R * ld), NAN);  // NaN padding: never read
  for (int64_t r = 0; r < R; ++r) {
    float* row = x.data() + r * ld;
    const float sd = rng.uniform(0.5f, 4.0f);
    for (int64_t i = 0; i < V; ++i) row[i] = rng.normal(sd);
    switch (dist) {
      case Dist::Normal: break;
      case Dist::Spiky:  // a few tokens far above the rest, like a confident LM
        for (int k = 0; k < 4; ++k) row[rng.uniform_int(0, int(V - 1))] += rng.uniform(5.0f, 20.0f);
        break;
      case Dist::Ties:  // a coarse grid: many equal values, the maximum tied too
        for (int64_t i = 0; i < V; ++i) row[i] = std::round(row[i] * 2.0f) / 2.0f;
        break;
      case Dist::NegInf:
        for (int64_t i = 0; i < V; ++i)
          if (rng.uniform(0.0f, 1.0f) < (r % 2 ? 0.1f : 0.999f)) row[i] = -INFINITY;
        row[rng.uniform_int(0, int(V - 1))] = rng.normal(1.0f);  // at least one finite logit
        break;
      case Dist::Flat:  // every token within a nat: nothing is cut by the tail
        for (int64_t i = 0; i < V; ++i) row[i] = rng.uniform(-0.5f, 0.5f);
        break;
    }
  }
  return x;
}

SampleRow random_row(Rng& rng, int64_t V) {
  SampleRow s;
  const int t = rng.uniform_int(0, 9);
  s.temperature = t == 0 ? 0.0f : std::exp(rng.uniform(std::log(0.05f), std::log(5.0f)));
  const int k = rng.uniform_int(0, 5);
  s.top_k = k <= 1 ? 0 : k == 2 ? 1 : k == 3 ? 50 : k == 4 ? int32_t(V) : rng.uniform_int(1, int(V));
  s.top_p = rng.uniform_int(0, 2) == 0 ? 1.0f : rng.uniform(0.01f, 0.99f);
  s.min_p = rng.uniform_int(0, 2) == 0 ? 0.0f : std::exp(rng.uniform(std::log(1e-4f), std::log(0.5f)));
  s.u = std::uniform_real_distribution<double>(0.0, 1.0)(rng.gen);
  return s;
}

struct Outcome {
  int64_t rows = 0, sampled = 0, boundary = 0, mismatched = 0;
};

/// Samples on the GPU and checks every row against the reference; returns the counts.
Outcome check_case(Rng& rng, int64_t R, int64_t V, Dist dist, std::vector<SampleRow> rows = {}) {
  const int64_t ld = V + (V % 4 == 0 ? 0 : 3);
  const std::vector<float> x = make_logits(rng, R, V, ld, dist);
  if (rows.empty())
    for (int64_t r = 0; r < R; ++r) rows.push_back(random_row(rng, V));
  DevBuf dx = upload_f32(x), drows(rows.size() * sizeof(SampleRow)), dtok(size_t(R) * 4), dlp(size_t(R) * 4);
  CUDA_CHECK(cudaMemcpy(drows.get(), rows.data(), rows.size() * sizeof(SampleRow), cudaMemcpyHostToDevice));
  dtok.poison();
  dlp.poison();
  kernels::SampleParams p;
  p.logits = dx.get<float>(), p.ld = ld, p.R = R, p.V = V, p.rows = drows.get<SampleRow>();
  p.tokens = dtok.get<int32_t>(), p.logprobs = dlp.get<float>();
  kernels::cuda::sample(p, nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<int32_t> tok(static_cast<size_t>(R));
  std::vector<float> lp(static_cast<size_t>(R));
  CUDA_CHECK(cudaMemcpy(tok.data(), dtok.get(), size_t(R) * 4, cudaMemcpyDeviceToHost));
  CUDA_CHECK(cudaMemcpy(lp.data(), dlp.get(), size_t(R) * 4, cudaMemcpyDeviceToHost));

  std::vector<int32_t> want(static_cast<size_t>(R));
  std::vector<float> want_lp(static_cast<size_t>(R));
  kernels::SampleParams q = p;
  q.logits = x.data(), q.rows = rows.data(), q.tokens = want.data(), q.logprobs = want_lp.data();
  kernels::sample_ref(q);

  Outcome o;
  o.rows = R;
  for (int64_t r = 0; r < R; ++r) {
    const SampleRow& s = rows[size_t(r)];
    SCOPED_TRACE(::testing::Message() << "row " << r << " T=" << s.temperature << " top_k=" << s.top_k
                                      << " top_p=" << s.top_p << " min_p=" << s.min_p << " u=" << s.u);
    if (tok[size_t(r)] < 0 || tok[size_t(r)] >= V) {
      ADD_FAILURE() << "token " << tok[size_t(r)] << " outside the vocabulary";
      ++o.mismatched;
      continue;
    }
    EXPECT_NEAR(lp[size_t(r)], want_lp[size_t(r)], 1e-5);  // NaN fails
    EXPECT_EQ(lp[size_t(r)], lp[size_t(r)]);
    if (s.temperature == 0.0f) {
      EXPECT_EQ(tok[size_t(r)], want[size_t(r)]);
      continue;
    }
    ++o.sampled;
    const double margin = boundary_margin(x.data() + r * ld, V, s);
    if (margin < kBoundary) {
      ++o.boundary;
      continue;
    }
    if (tok[size_t(r)] != want[size_t(r)]) ++o.mismatched;
    EXPECT_EQ(tok[size_t(r)], want[size_t(r)]) << "margin " << margin;
  }
  // Batch invariance: a few rows alone, copied to a misaligned buffer (the kernel's scalar loads), bitwise equal.
  for (int64_t r : {int64_t(0), R / 2, R - 1}) {
    std::vector<float> one(size_t(V) + 1);
    std::copy_n(x.begin() + r * ld, V, one.begin() + 1);
    DevBuf d1 = upload_f32(one), dr(sizeof(SampleRow)), dt(4), dl(4);
    CUDA_CHECK(cudaMemcpy(dr.get(), &rows[size_t(r)], sizeof(SampleRow), cudaMemcpyHostToDevice));
    dt.poison();
    dl.poison();
    kernels::SampleParams a = p;
    a.logits = d1.get<float>() + 1, a.R = 1, a.rows = dr.get<SampleRow>(), a.tokens = dt.get<int32_t>();
    a.logprobs = dl.get<float>();
    kernels::cuda::sample(a, nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    int32_t t1 = -1;
    float l1 = NAN;
    CUDA_CHECK(cudaMemcpy(&t1, dt.get(), 4, cudaMemcpyDeviceToHost));
    CUDA_CHECK(cudaMemcpy(&l1, dl.get(), 4, cudaMemcpyDeviceToHost));
    EXPECT_EQ(t1, tok[size_t(r)]) << "row " << r << " alone";
    EXPECT_EQ(std::memcmp(&l1, &lp[size_t(r)], 4), 0) << "row " << r << " alone: logprob " << l1 << " vs "
                                                      << lp[size_t(r)];
  }
  return o;
}

const char* dist_name(Dist d) {
  switch (d) {
    case Dist::Normal: return "normal";
    case Dist::Spiky: return "spiky";
    case Dist::Ties: return "ties";
    case Dist::NegInf: return "-inf";
    case Dist::Flat: return "flat";
  }
  return "";
}

TEST(GpuSampling, MatchesReference) {
  REQUIRE_GPU();
  struct Case {
    int64_t R, V;
  };
  Outcome all;
  for (const Case c : {Case{64, 100352}, Case{1, 100352}, Case{7, 100352}, Case{33, 7}, Case{40, 1000},
                       Case{17, 32001}}) {
    for (Dist d : {Dist::Normal, Dist::Spiky, Dist::Ties, Dist::NegInf, Dist::Flat}) {
      const uint64_t seed = next_seed();
      SCOPED_TRACE(::testing::Message() << "seed " << seed << " R=" << c.R << " V=" << c.V << " " << dist_name(d));
      Rng rng(seed);
      const Outcome o = check_case(rng, c.R, c.V, d);
      all.rows += o.rows, all.sampled += o.sampled, all.boundary += o.boundary, all.mismatched += o.mismatched;
    }
  }
  std::printf("GpuSampling: %lld rows, %lld sampled, %lld within %.0e of a boundary, %lld mismatched\n",
              (long long)all.rows, (long long)all.sampled, (long long)all.boundary, kBoundary,
              (long long)all.mismatched);
  EXPECT_LT(all.boundary, all.sampled / 20 + 1);  // the boundary allowance is a rare escape, not the norm
}

TEST(GpuSampling, EachFilterAloneAtOlmoVocabulary) {
  REQUIRE_GPU();
  const int64_t V = 100352, R = 48;
  const uint64_t seed = next_seed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  Rng rng(seed);
  std::vector<SampleRow> rows;
  for (int64_t r = 0; r < R; ++r) {
    SampleRow s;
    const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng.gen);
    switch (r % 6) {
      case 0: s = {0.0f, 0, 1.0f, 0.0f, 0.0}; break;
      case 1: s = {0.05f + 0.1f * float(r % 7), 0, 1.0f, 0.0f, u}; break;
      case 2: s = {1.0f, 50, 1.0f, 0.0f, u}; break;
      case 3: s = {1.0f, 0, 0.9f, 0.0f, u}; break;
      case 4: s = {1.0f, 0, 1.0f, 0.05f, u}; break;
      case 5: s = {5.0f, 0, 1.0f, 0.0f, r % 12 == 5 ? 0.9999999999 : u}; break;
    }
    rows.push_back(s);
  }
  for (Dist d : {Dist::Normal, Dist::Spiky, Dist::Ties}) {
    SCOPED_TRACE(dist_name(d));
    const Outcome o = check_case(rng, R, V, d, rows);
    EXPECT_EQ(o.mismatched, 0);
  }
}

}  // namespace
