#!/usr/bin/env python3
"""Peers of `hyrax bench-kernels`, measured on the same card in the same run (scripts/gpu_check.sh runs both).

flash-linear-attention (fla) 0.6.0: chunk_gated_delta_rule (prefill) and fused_recurrent_gated_delta_rule (decode),
the Triton kernels vLLM uses for Gated DeltaNet; torch SDPA (flash backend) for attention; the D2D copy and a cuBLAS
bf16 GEMM through torch as the limits. Shapes are hyrax's: Olmo Hybrid 7B (GDN H=30, K=96, V=192; attention 30 x 128).
Timings are CUDA-graph replays (triton.testing.do_bench_cudagraph), medians. fla comes from wheels carried to the
machine (see scripts/gpu_check.sh); without it the fla lines say so and the rest still runs.
"""
import sys

import torch
import triton

H, K, V = 30, 96, 192
dev = "cuda"


def bench(fn, rep=100):
    """Median milliseconds of one call, replayed from a CUDA graph (plain event timing where fn cannot be captured,
    e.g. when it reads sequence lengths back to the host; then the line says 'eager')."""
    fn()
    torch.cuda.synchronize()
    try:
        return triton.testing.do_bench_cudagraph(fn, rep=rep, return_mode="median")
    except Exception as e:  # noqa: BLE001
        print(f"       (not capturable: {type(e).__name__}; eager timing)")
        torch.cuda.synchronize()
        return triton.testing.do_bench(fn, warmup=25, rep=rep, return_mode="median")


def limits():
    n = 1 << 28  # 1 GiB of float32
    a = torch.randn(n, device=dev)
    b = torch.empty_like(a)
    ms = bench(lambda: b.copy_(a))
    copy = 2 * a.numel() * 4 / (ms * 1e-3)
    del a, b
    x = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    w = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    ms = bench(lambda: x @ w.t())
    gemm = 2 * 8192**3 / (ms * 1e-3)
    print(f"peer-limit  torch D2D copy (1 GiB, read + write)   {copy / 1e12:8.2f} TB/s")
    print(f"peer-limit  torch bf16 GEMM 8192^3                  {gemm / 1e12:8.1f} TFLOP/s")
    return copy, gemm


def fla_gdn(copy):
    try:
        from fla.ops.gated_delta_rule import chunk_gated_delta_rule, fused_recurrent_gated_delta_rule
    except Exception as e:  # noqa: BLE001 - report any import failure and go on
        print(f"fla    not available: {type(e).__name__}: {e}")
        return
    import fla

    print(f"fla    version {getattr(fla, '__version__', '?')}")
    fla_decode(fused_recurrent_gated_delta_rule, copy)
    for n, length in [(1, 4096), (1, 16384), (1, 65536), (8, 2048)]:
        T = n * length
        q = torch.randn(1, T, H, K, device=dev, dtype=torch.bfloat16)
        k = torch.randn(1, T, H, K, device=dev, dtype=torch.bfloat16)
        v = torch.randn(1, T, H, V, device=dev, dtype=torch.bfloat16)
        g = -torch.rand(1, T, H, device=dev, dtype=torch.float32) * 0.5  # log decay
        beta = torch.rand(1, T, H, device=dev, dtype=torch.bfloat16)
        h0 = torch.randn(n, H, K, V, device=dev, dtype=torch.float32) * 0.1
        cu = torch.arange(0, T + 1, length, device=dev, dtype=torch.long) if n > 1 else None
        cu_cpu = cu.cpu() if cu is not None else None

        def run():
            return chunk_gated_delta_rule(q, k, v, g, beta, initial_state=h0, output_final_state=True,
                                          use_qk_l2norm_in_kernel=True, cu_seqlens=cu, cu_seqlens_cpu=cu_cpu)

        try:
            ms = bench(run, rep=200 if T <= 16384 else 500)
            print(f"fla    prefill chunk_gated_delta_rule  {n} x {length:<6} H=30 K=96 V=192  {ms:8.3f} ms  "
                  f"{T / (ms * 1e-3) / 1e6:7.1f} Mtok/s")
        except Exception as e:  # noqa: BLE001
            print(f"fla    prefill {n} x {length}: failed: {type(e).__name__}: {e}")
        del q, k, v, g, beta, h0
        torch.cuda.empty_cache()


def fla_decode(fused_recurrent_gated_delta_rule, copy):
    for B in [1, 32, 256]:
        q = torch.randn(B, 1, H, K, device=dev, dtype=torch.bfloat16)
        k = torch.randn(B, 1, H, K, device=dev, dtype=torch.bfloat16)
        v = torch.randn(B, 1, H, V, device=dev, dtype=torch.bfloat16)
        g = -torch.rand(B, 1, H, device=dev, dtype=torch.float32) * 0.5
        beta = torch.rand(B, 1, H, device=dev, dtype=torch.bfloat16)
        # Rotate states so that the working set exceeds L2, as hyrax's decode benchmark does.
        rot = max(1, min(64, int(256e6 // (B * H * K * V * 4))))
        states = [torch.randn(B, H, K, V, device=dev, dtype=torch.float32) * 0.1 for _ in range(rot)]

        def run():
            for s in states:
                fused_recurrent_gated_delta_rule(q, k, v, g, beta, initial_state=s, output_final_state=True,
                                                 use_qk_l2norm_in_kernel=True)

        try:
            ms = bench(run) / rot
            bw = 2 * B * H * K * V * 4 / (ms * 1e-3)
            print(f"fla    decode fused_recurrent B={B:<4} H=30 K=96 V=192        {ms * 1e3:8.2f} us  state r+w "
                  f"{bw / 1e12:6.2f} TB/s = {100 * bw / copy:5.1f}% of copy bandwidth")
        except Exception as e:  # noqa: BLE001
            print(f"fla    decode B={B}: failed: {type(e).__name__}: {e}")
        del states
        torch.cuda.empty_cache()


def sdpa(copy, gemm):
    F = torch.nn.functional
    D = 128
    for T in [4096, 16384]:
        q = torch.randn(1, H, T, D, device=dev, dtype=torch.bfloat16)
        k = torch.randn(1, H, T, D, device=dev, dtype=torch.bfloat16)
        v = torch.randn(1, H, T, D, device=dev, dtype=torch.bfloat16)
        ms = bench(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
        flops = 2.0 * T * T * D * H
        print(f"sdpa   prefill causal   T={T:<6} 30 heads x 128          {ms:8.3f} ms  "
              f"{flops / (ms * 1e-3) / 1e12:6.1f} TFLOP/s ({100 * flops / (ms * 1e-3) / gemm:4.1f}% of GEMM)")
    B, ctx = 32, 8192
    q = torch.randn(B, H, 1, D, device=dev, dtype=torch.bfloat16)
    k = torch.randn(B, H, ctx, D, device=dev, dtype=torch.bfloat16)
    v = torch.randn(B, H, ctx, D, device=dev, dtype=torch.bfloat16)
    ms = bench(lambda: F.scaled_dot_product_attention(q, k, v))
    byts = 2.0 * B * ctx * H * D * 2
    print(f"sdpa   decode (dense KV) B=32 ctx=8192 30 heads x 128  {ms:8.3f} ms  KV read "
          f"{byts / (ms * 1e-3) / 1e12:6.2f} TB/s = {100 * byts / (ms * 1e-3) / copy:5.1f}% of copy bandwidth")


def main():
    print(f"peer_bench: {torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}")
    copy, gemm = limits()
    sdpa(copy, gemm)
    fla_gdn(copy)
    return 0


if __name__ == "__main__":
    sys.exit(main())
