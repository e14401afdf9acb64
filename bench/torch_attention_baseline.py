"""Attention baseline for bench_kernels (issue 3): PyTorch's scaled_dot_product_attention on
the GPU with each backend it has (cuDNN's fused attention, FlashAttention, memory-efficient),
at the shapes bench_kernels times, with the same method (CUDA events, L2 flushed by a 256 MB
memset before each repetition, 3 warm-ups, median of 20). Prints CSV rows in bench_kernels'
format, so the two outputs can be read side by side:

    kernel,shape,dtype,variant,us,value,unit,pct_of_peak

    python3 bench/torch_attention_baseline.py      (run by bench/gpu_check.sh)

Inputs are [B, NH, T, HS] tensors (SDPA's layout); our kernel reads the fused QKV projection
[B, T, 3C] instead, so PyTorch is not charged for a transpose it would need in a real model.
"""
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

SHAPES = [(32, 77, 8, True), (32, 77, 12, True), (32, 50, 12, False), (32, 197, 12, False),
          (32, 257, 16, False), (8, 577, 16, False)]
BACKENDS = [("torch_sdpa_cudnn", SDPBackend.CUDNN_ATTENTION), ("torch_sdpa_flash", SDPBackend.FLASH_ATTENTION),
            ("torch_sdpa_mem_efficient", SDPBackend.EFFICIENT_ATTENTION)]
PEAK_TFLOPS = 989.0  # H100 SXM dense f16, as bench_kernels uses


def time_us(fn, flush):
    for _ in range(3):
        fn()
    times = []
    for _ in range(20):
        flush.zero_()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b) * 1e3)
    times.sort()
    return times[len(times) // 2]


def main():
    flush = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    print("kernel,shape,dtype,variant,us,value,unit,pct_of_peak")
    for dt, name in ((torch.float16, "f16"), (torch.bfloat16, "bf16")):
        for B, T, NH, causal in SHAPES:
            HS = 64
            q, k, v = (torch.randn(B, NH, T, HS, device="cuda", dtype=dt) for _ in range(3))
            pairs = T * (T + 1) / 2 if causal else T * T
            flop = 4.0 * B * NH * pairs * HS
            shape = f"{B}x{T}x{NH}x{HS}" + ("_causal" if causal else "")
            for variant, backend in BACKENDS:
                try:
                    with sdpa_kernel(backend):
                        us = time_us(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal), flush)
                except RuntimeError as e:  # backend not available for this shape/dtype
                    print(f"attention,{shape},{name},{variant},nan,nan,TFLOP/s,nan  # {str(e).splitlines()[0][:80]}")
                    continue
                tf = flop / (us * 1e-6) / 1e12
                print(f"attention,{shape},{name},{variant},{us:.2f},{tf:.1f},TFLOP/s,{100 * tf / PEAK_TFLOPS:.1f}", flush=True)


if __name__ == "__main__":
    main()
