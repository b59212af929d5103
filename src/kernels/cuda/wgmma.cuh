// Hopper (sm_90a) helpers for warpgroup kernels: mbarriers, TMA loads, the async-proxy fence, shared-memory matrix
// descriptors for 128-byte-swizzled bf16 tiles, and the wgmma.mma_async products (m64nNk16, bf16 in, f32
// accumulators).
//
// A warpgroup is 4 consecutive warps (128 threads). Accumulator layout of m64nNk16 (warp w of the warpgroup owns
// rows 16w..16w+15; g = lane / 4, t = lane % 4): d[4j + 0..1] = D[16w + g][8j + 2t .. +1],
// d[4j + 2..3] = D[16w + g + 8][8j + 2t .. +1] — per 8 columns the mma.sync C layout. A register operand (RS form)
// has the mma.sync m16n8k16 A layout for the warp's 16 rows.
//
// Swizzled tile layout ("SW128"): rows of 64 bf16 (128 bytes); the 16-byte chunk c of row r lies at chunk c ^ (r % 8);
// 8 rows form a 1024-byte atom, atoms 1024-byte aligned. A wider row is split into panels of 64 columns.
#pragma once

#include <cstdint>

#include "kernels/cuda/device_utils.cuh"

namespace hyrax::cuda {

// ---- mbarrier ------------------------------------------------------------------------------------------------------

__device__ __forceinline__ void mbar_init(uint64_t* bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_addr(bar)) : "memory");
}
/// One of the barrier's expected arrivals, made when all of this thread's earlier cp.async copies have landed.
__device__ __forceinline__ void mbar_arrive_cp_async(uint64_t* bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(smem_addr(bar)) : "memory");
}
/// Waits until the barrier's phase of parity `parity` has completed.
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
  const uint32_t a = smem_addr(bar);
  uint32_t done = 0;
  while (!done) {
    asm volatile(
        "{\n.reg .pred p;\n"
        "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        "selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(a), "r"(parity)
        : "memory");
  }
}

/// Makes initialized mbarriers visible to the other threads and to the TMA unit (before the block's first barrier).
__device__ __forceinline__ void fence_mbarrier_init() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
/// This thread's arrival, announcing `bytes` more bytes that TMA copies will deliver to the barrier's current phase.
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(bytes) : "memory");
}

// ---- TMA (bulk copies, completing on an mbarrier) ------------------------------------------------------------------

/// The box at coordinates (c0, c1, c2) of a 3-D tensor map (a __grid_constant__ kernel parameter; tma.h) -> dst.
__device__ __forceinline__ void tma_load_3d(void* dst, const void* map, int c0, int c1, int c2, uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], "
      "[%5];\n" ::"r"(smem_addr(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(smem_addr(bar))
      : "memory");
}
/// The box at (c0, c1, c2) of a 3-D tensor map <- src (shared memory, in the map's swizzle), in this thread's bulk
/// group: commit with bulk_commit(); src may be reused once bulk_wait_read<N>() lets this thread through.
__device__ __forceinline__ void tma_store_3d(const void* map, int c0, int c1, int c2, const void* src) {
  asm volatile("cp.async.bulk.tensor.3d.global.shared::cta.bulk_group [%0, {%1, %2, %3}], [%4];\n" ::"l"(
                   reinterpret_cast<uint64_t>(map)),
               "r"(c0), "r"(c1), "r"(c2), "r"(smem_addr(src))
               : "memory");
}
__device__ __forceinline__ void bulk_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }
/// Waits until at most N of this thread's bulk groups are still reading their shared memory.
template <int N>
__device__ __forceinline__ void bulk_wait_read() {
  asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(N) : "memory");
}
/// Waits until at most N of this thread's bulk groups are pending (their writes done).
template <int N>
__device__ __forceinline__ void bulk_wait() {
  asm volatile("cp.async.bulk.wait_group %0;\n" ::"n"(N) : "memory");
}
/// Four 8x8 b16 matrices from registers (r[i]: the mma fragment of matrix i) to shared memory: lane l gives the address
/// of row (l % 8) of matrix l / 8.
__device__ __forceinline__ void stmatrix_x4(void* p, const uint32_t (&r)[4]) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(smem_addr(p)), "r"(r[0]),
               "r"(r[1]), "r"(r[2]), "r"(r[3])
               : "memory");
}
/// The same, transposed: row (l % 8) of matrix l / 8 receives column (l % 8) of the fragment's matrix.
__device__ __forceinline__ void stmatrix_x4_trans(void* p, const uint32_t (&r)[4]) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(smem_addr(p)),
               "r"(r[0]), "r"(r[1]), "r"(r[2]), "r"(r[3])
               : "memory");
}

/// `bytes` contiguous bytes (a multiple of 16; both addresses 16-byte aligned) global -> shared.
__device__ __forceinline__ void bulk_load(void* dst, const void* src, uint32_t bytes, uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(smem_addr(dst)),
      "l"(src), "r"(bytes), "r"(smem_addr(bar))
      : "memory");
}

/// Makes this thread's view of shared memory (generic proxy: st.shared, cp.async) visible to its later async-proxy
/// operations (wgmma operand reads).
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

/// Barrier among `threads` threads (a multiple of 32) on hardware barrier `id` (1..15; 0 is __syncthreads).
__device__ __forceinline__ void named_barrier_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

/// Arrival at hardware barrier `id` without waiting (the other side of a named_barrier_sync).
__device__ __forceinline__ void named_barrier_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

/// Hands registers back to the SM (dec) or takes them (inc) for the whole warpgroup: a producer warpgroup that needs
/// few registers gives them to the consumers. N a multiple of 8 in 24..256.
template <int N>
__device__ __forceinline__ void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N>
__device__ __forceinline__ void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}

// ---- wgmma -------------------------------------------------------------------------------------------------------

/// Byte offset of 16-byte chunk c (0..7) of row r within an SW128 panel.
__device__ __forceinline__ uint32_t sw128(int r, int c) { return uint32_t(r * 128 + ((c ^ (r & 7)) << 4)); }

/// Descriptor of a bf16 operand tile in shared memory in the SW128 layout. `lbo`: bytes between panels of 64
/// columns when the operand's MN dimension is contiguous (MN-major), unused when K is (K-major); `sbo`: bytes
/// between groups of 8 rows (1024 for dense atoms).
__device__ __forceinline__ uint64_t sw128_desc(const void* p, uint32_t lbo, uint32_t sbo) {
  return uint64_t((smem_addr(p) & 0x3FFFF) >> 4) | (uint64_t((lbo >> 4) & 0x3FFF) << 16) |
         (uint64_t((sbo >> 4) & 0x3FFF) << 32) | (uint64_t(1) << 62);
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

/// The A fragment of k-step kk (a register operand of wgmma_rs) from a float32 accumulator tile: its columns
/// 16kk .. 16kk + 15, rounded to bf16.
template <int M>
__device__ __forceinline__ void acc_a_frag(uint32_t (&a)[4], const float (&d)[M], int kk) {
  a[0] = pack_bf16(d[8 * kk], d[8 * kk + 1]);
  a[1] = pack_bf16(d[8 * kk + 2], d[8 * kk + 3]);
  a[2] = pack_bf16(d[8 * kk + 4], d[8 * kk + 5]);
  a[3] = pack_bf16(d[8 * kk + 6], d[8 * kk + 7]);
}

/// Keeps the compiler from moving accesses of these registers across an asynchronous wgmma (issue .. wait).
template <int N>
__device__ __forceinline__ void fence_regs(float (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}
template <int N>
__device__ __forceinline__ void fence_regs(uint32_t (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+r"(r[i])::"memory");
}

// The accumulator operands of an m64nN wgmma (N / 2 of them), for the asm statements below: 16 at a time from o.
#define HYRAX_WGMMA_D16(d, o)                                                                                     \
  "+f"(d[o + 0]), "+f"(d[o + 1]), "+f"(d[o + 2]), "+f"(d[o + 3]), "+f"(d[o + 4]), "+f"(d[o + 5]), "+f"(d[o + 6]), \
      "+f"(d[o + 7]), "+f"(d[o + 8]), "+f"(d[o + 9]), "+f"(d[o + 10]), "+f"(d[o + 11]), "+f"(d[o + 12]),          \
      "+f"(d[o + 13]), "+f"(d[o + 14]), "+f"(d[o + 15])
#define HYRAX_WGMMA_D32(d) HYRAX_WGMMA_D16(d, 0), HYRAX_WGMMA_D16(d, 16)
#define HYRAX_WGMMA_D48(d) HYRAX_WGMMA_D32(d), HYRAX_WGMMA_D16(d, 32)
#define HYRAX_WGMMA_D64(d) HYRAX_WGMMA_D48(d), HYRAX_WGMMA_D16(d, 48)
// Their places in the asm string: %0 .. %(N / 2 - 1).
#define HYRAX_WGMMA_R32                                                                   \
  "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, " \
  "%19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define HYRAX_WGMMA_R48 \
  HYRAX_WGMMA_R32 ", %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47"
#define HYRAX_WGMMA_R64 \
  HYRAX_WGMMA_R48 ", %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"

/// d (+)= A·B for a 64xN tile, k = 16, both operands in shared memory (descriptors). TA = 0: A [64 (m)][16 (k)]
/// K-major; TA = 1: A stored [16 (k)][64 (m)], M-major. TB = 0: B [N][16 (k)] K-major; TB = 1: B stored [16 (k)][N],
/// N-major. accumulate = false overwrites d. N = 64, 96 or 128 (d holds N / 2 accumulators).
template <int N, int TA, int TB>
__device__ __forceinline__ void wgmma_ss(float (&d)[N / 2], uint64_t desc_a, uint64_t desc_b, bool accumulate) {
  static_assert(N == 64 || N == 96 || N == 128, "wgmma_ss: N");
  if constexpr (N == 64) {
    asm volatile(
        "{\n.reg .pred p;\n"
        "setp.ne.b32 p, %34, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
        "{" HYRAX_WGMMA_R32
        "}, "
        "%32, %33, p, 1, 1, %35, %36;\n}\n"
        : HYRAX_WGMMA_D32(d)
        : "l"(desc_a), "l"(desc_b), "r"(int(accumulate)), "n"(TA), "n"(TB));
  } else if constexpr (N == 96) {
    asm volatile(
        "{\n.reg .pred p;\n"
        "setp.ne.b32 p, %50, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n96k16.f32.bf16.bf16 "
        "{" HYRAX_WGMMA_R48
        "}, "
        "%48, %49, p, 1, 1, %51, %52;\n}\n"
        : HYRAX_WGMMA_D48(d)
        : "l"(desc_a), "l"(desc_b), "r"(int(accumulate)), "n"(TA), "n"(TB));
  } else if constexpr (N == 128) {
    asm volatile(
        "{\n.reg .pred p;\n"
        "setp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        "{" HYRAX_WGMMA_R64
        "}, "
        "%64, %65, p, 1, 1, %67, %68;\n}\n"
        : HYRAX_WGMMA_D64(d)
        : "l"(desc_a), "l"(desc_b), "r"(int(accumulate)), "n"(TA), "n"(TB));
  }
}

/// d (+)= A·B for a 64xN tile, k = 16: A [64 (m)][16 (k)] from registers (a[4], the mma.sync A layout for the warp's
/// 16 rows: an accumulator tile's columns 16kk .. 16kk + 15 packed to bf16 are k-step kk's A), B in shared memory
/// (TB as in wgmma_ss). accumulate = false overwrites d. N as in wgmma_ss.
template <int N, int TB>
__device__ __forceinline__ void wgmma_rs(float (&d)[N / 2], const uint32_t (&a)[4], uint64_t desc_b, bool accumulate) {
  static_assert(N == 64 || N == 96 || N == 128, "wgmma_rs: N");
  if constexpr (N == 64) {
    asm volatile(
        "{\n.reg .pred p;\n"
        "setp.ne.b32 p, %37, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
        "{" HYRAX_WGMMA_R32
        "}, "
        "{%32, %33, %34, %35}, %36, p, 1, 1, %38;\n}\n"
        : HYRAX_WGMMA_D32(d)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(int(accumulate)), "n"(TB));
  } else if constexpr (N == 96) {
    asm volatile(
        "{\n.reg .pred p;\n"
        "setp.ne.b32 p, %53, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n96k16.f32.bf16.bf16 "
        "{" HYRAX_WGMMA_R48
        "}, "
        "{%48, %49, %50, %51}, %52, p, 1, 1, %54;\n}\n"
        : HYRAX_WGMMA_D48(d)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(int(accumulate)), "n"(TB));
  } else if constexpr (N == 128) {
    asm volatile(
        "{\n.reg .pred p;\n"
        "setp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        "{" HYRAX_WGMMA_R64
        "}, "
        "{%64, %65, %66, %67}, %68, p, 1, 1, %70;\n}\n"
        : HYRAX_WGMMA_D64(d)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(int(accumulate)), "n"(TB));
  }
}

#undef HYRAX_WGMMA_D16
#undef HYRAX_WGMMA_D32
#undef HYRAX_WGMMA_D48
#undef HYRAX_WGMMA_D64
#undef HYRAX_WGMMA_R32
#undef HYRAX_WGMMA_R48
#undef HYRAX_WGMMA_R64

}  // namespace hyrax::cuda
