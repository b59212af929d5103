// Plain reference for swiglu: float64 arithmetic, one thread.
#include <cmath>

#include "core/check.h"
#include "kernels/activations/activations.h"

namespace hyrax::kernels {

namespace detail {
void check_swiglu(const SwigluParams& p) {
  HYRAX_CHECK(p.T >= 0 && p.C > 0, "T=", p.T, " C=", p.C);
  HYRAX_CHECK(p.T == 0 || (p.gate && p.up && p.y), "null pointer");
  HYRAX_CHECK(p.ldg >= p.C && p.ldu >= p.C && p.ldy >= p.C, "row strides ldg=", p.ldg, " ldu=", p.ldu,
              " ldy=", p.ldy, " below C=", p.C);
  HYRAX_CHECK(p.y != p.gate || p.ldy == p.ldg, "y aliases gate with another row stride");
  HYRAX_CHECK(p.y != p.up || p.ldy == p.ldu, "y aliases up with another row stride");
}
}  // namespace detail

void swiglu_ref(const SwigluParams& p) {
  detail::check_swiglu(p);
  for (int64_t t = 0; t < p.T; ++t) {
    for (int64_t c = 0; c < p.C; ++c) {
      const double g = p.gate[t * p.ldg + c], u = p.up[t * p.ldu + c];
      p.y[t * p.ldy + c] = float(g / (1.0 + std::exp(-g)) * u);
    }
  }
}

}  // namespace hyrax::kernels
