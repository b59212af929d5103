// The CPU paged attention kernel compiled for AVX2 + FMA (see attention_cpu.h).
#define HYRAX_ATTN_ISA attn_avx2
#include "kernels/attention/attention_cpu.h"
