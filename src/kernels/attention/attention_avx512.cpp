// The CPU paged attention kernel compiled for AVX-512 (see attention_cpu.h).
#define HYRAX_ATTN_ISA attn_avx512
#include "kernels/attention/attention_cpu.h"
