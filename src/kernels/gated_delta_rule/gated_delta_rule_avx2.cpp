// The CPU gated delta rule kernels compiled for AVX2 + FMA (see gated_delta_rule_cpu.h).
#define HYRAX_GDN_ISA gdn_avx2
#include "kernels/gated_delta_rule/gated_delta_rule_cpu.h"
