// The CPU gated delta rule kernels compiled for AVX-512 (see gated_delta_rule_cpu.h).
#define HYRAX_GDN_ISA gdn_avx512
#include "kernels/gated_delta_rule/gated_delta_rule_cpu.h"
