#!/usr/bin/env python3
"""The paper model of one f16 pass on an H100 / H200: ViT-B/32 images and 77-token texts.

    python3 bench/paper_model.py [--batch 1024] [--markdown]

Every op the CUDA graph runs (clip/family.cpp, clip/vit.cpp, clip/model.cpp; engine/graph.cpp's
node_cost counts the same FLOPs and bytes), its FLOPs and the bytes it must move, and a time:
  - GEMMs (cuBLASLt): FLOPs / (gemm_eff x the measured dense f16 rate), or bytes / bandwidth if
    longer (the small ones: batch 1, the last block's pooled rows);
  - every other kernel: bytes / bandwidth x its own factor (how far from the floor the kernel is
    expected to run: `attention_factor`), never less than `min_kernel_us`;
  - the MLP's first layer: the faster of cuBLASLt + the bias_act pass over its output, and the
    fused gemm_bias_act at `fused_eff` (kernels/linear.cu times both per shape and keeps the
    faster, so a GPU run shows which it was);
  - `gap_us` between kernels (a CUDA graph's launch-to-launch latency).
"before" is the code before the GPU-path changes of 2026-12-04 (the issue's model): the
residual added in the next LayerNorm (add_layernorm: four activations), the bias_act pass
always, the heuristic's first GEMM algorithm (5 points less efficient), 64-query attention
tiles (~1.11x its floor; text's second, 13/64-full block: +0.4 ms at batch 1024), and the
unfused front end (~0.9 ms at batch 1024). Nothing here is measured: bench/gpu_check.sh's
`clip bench --profile` prints each op's measured time beside its roofline, line by line.
"""
import argparse

GPUS = {
    # dense f16 tensor rate cuBLASLt reaches at best (measured on H100 SXM: ~800 of 989 TFLOP/s),
    # and the copy bandwidth a streaming kernel reaches (~90% of HBM3's 3.35 / HBM3e's 4.8 TB/s).
    "H100": dict(tflops=800.0, tbps=3.0),
    "H200": dict(tflops=800.0, tbps=4.3),
}
ASSUME = dict(
    gemm_eff=0.72,          # cuBLASLt at 60-75% of the measured rate; the timed choice: the upper half
    gemm_eff_before=0.67,   # the heuristic's first algorithm
    fused_eff=0.50,         # gemm_bias_act (mma.sync, no wgmma): a guess, to be measured
    attention_factor=1.05,  # ldmatrix, per-length query tiles (before: 1.11)
    min_kernel_us=2.0,      # the shortest a kernel takes
    gap_us=1.0,             # between two kernels of a CUDA graph
)

VIT_B32 = dict(image=224, patch=32, width=768, layers=12, heads=12, mlp=3072, embed=512)
TEXT = dict(ctx=77, width=512, layers=12, heads=8, mlp=2048, embed=512)
F16 = 2


class Model:
    def __init__(self, gpu, before):
        self.g = GPUS[gpu]
        self.before = before
        self.ops = []  # (name, flops, bytes, ms, kernels, how)

    def mem_ms(self, nbytes, factor=1.0):
        return max(nbytes / (self.g["tbps"] * 1e12) * 1e3 * factor, ASSUME["min_kernel_us"] * 1e-3)

    def gemm_ms(self, M, N, K, eff=None):
        eff = eff or (ASSUME["gemm_eff_before"] if self.before else ASSUME["gemm_eff"])
        flops = 2.0 * M * N * K
        return max(flops / (eff * self.g["tflops"] * 1e12) * 1e3, self.mem_ms((M * K + N * K + M * N) * F16))

    def add(self, name, flops, nbytes, ms, count=1, kernels=1, how=""):
        self.ops.append((name, flops * count, nbytes * count, ms * count, kernels * count, how))

    def mem(self, name, nbytes, factor=1.0, count=1, how=""):
        self.add(name, 0, nbytes, self.mem_ms(nbytes, factor), count, how=how)

    def linear(self, name, M, N, K, count=1, residual=False, act=False):
        nbytes = (M * K + N * K + M * N + (M * N if residual else 0)) * F16
        ms, kernels, how = self.gemm_ms(M, N, K), 1, ""
        if act:  # cuBLASLt + bias_act over the output, or the fused kernel: the faster
            unfused = ms + self.mem_ms(2 * M * N * F16)
            fused = self.gemm_ms(M, N, K, ASSUME["fused_eff"])
            if self.before or unfused <= fused:
                ms, kernels, how = unfused, 2, "GEMM + bias_act"
            else:
                ms, how = fused, "fused"
        self.add(name, 2.0 * M * N * K, nbytes, ms, count, kernels, how)

    def layernorm(self, name, M, C, count=1):
        if self.before:  # add_layernorm: x and the pending delta in, the sum and y out
            self.mem(name, 4 * M * C * F16, count=count, how="add_layernorm")
        else:
            self.mem(name, 2 * M * C * F16, count=count)

    def attention(self, B, T, C, H, causal, count=1):
        flops = 4.0 * B * T * T * C * (0.5 if causal else 1.0)
        nbytes = (3 + 1) * B * T * C * F16  # qkv in, out
        ms = self.mem_ms(nbytes, 1.11 if self.before else ASSUME["attention_factor"])
        if self.before and causal and T % 64 and T % 64 < 16:
            ms += 0.4 / 12 * B / 1024  # the second, mostly empty 64-query block
        self.add(f"attention T{T} H{H}{' causal' if causal else ''}", flops, nbytes, ms, count)

    def blocks(self, B, T, W, H, mlp, L, causal):
        M = B * T
        n = L - 1  # every block but the last on all B*T rows; the last one's out_proj and MLP on B
        self.layernorm("layernorm (ln_1)", M, W, L)
        self.linear("linear qkv", M, 3 * W, W, L)
        self.attention(B, T, W, H, causal, L)
        self.linear("linear out_proj + residual", M, W, W, n, residual=True)
        self.layernorm("layernorm (ln_2)", M, W, n)
        self.linear("linear fc1 + quick_gelu", M, mlp, W, n, act=True)
        self.linear("linear fc2 + residual", M, W, mlp, n, residual=True)
        self.mem("gather_rows (pooled rows, last block)", 2 * 2 * B * W * F16)
        self.linear("last block: out_proj + residual", B, W, W, residual=True)
        self.layernorm("last block: ln_2", B, W)
        self.linear("last block: fc1 + quick_gelu", B, mlp, W, act=True)
        self.linear("last block: fc2 + residual", B, W, mlp, residual=True)

    def image(self, B, c=VIT_B32):
        g, W = (c["image"] // c["patch"]) ** 2, c["width"]
        px, cols = B * c["image"] ** 2 * 3, B * g * 3 * c["patch"] ** 2
        if self.before:  # normalize_rgb8 and the patch gather, 1-2 byte accesses: ~0.9 ms at 1024
            self.add("front end: bytes -> patch columns", 0, px + 2 * px * F16 + cols * F16, 0.9 * B / 1024,
                     kernels=2, how="normalize_rgb8, patch_gather")
        else:
            self.mem("front end: bytes -> patch columns", px + cols * F16, how="patch_gather_rgb8")
        self.linear("patch GEMM", B * g, W, 3 * c["patch"] ** 2)
        self.mem("class_pos", (B * g + B * (g + 1)) * W * F16)
        self.mem("layernorm (ln_pre)", 2 * B * (g + 1) * W * F16)
        self.blocks(B, g + 1, W, c["heads"], c["mlp"], c["layers"], False)
        self.mem("layernorm (ln_post)", 2 * B * W * F16)
        self.linear("projection", B, c["embed"], W)

    def text(self, B, c=TEXT):
        T, W = c["ctx"], c["width"]
        self.mem("embedding", 2 * B * T * W * F16)
        self.mem("add (positions)", 2 * B * T * W * F16)
        self.blocks(B, T, W, c["heads"], c["mlp"], c["layers"], True)
        self.mem("layernorm (ln_final)", 2 * B * W * F16)
        self.linear("projection", B, c["embed"], W)

    def total_ms(self):
        kernels = sum(op[4] for op in self.ops)
        return sum(op[3] for op in self.ops) + kernels * ASSUME["gap_us"] * 1e-3, kernels


def run(tower, gpu, B, before):
    m = Model(gpu, before)
    getattr(m, tower)(B)
    return m


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=1024)
    args = ap.parse_args()
    print("assumptions: " + ", ".join(f"{k} {v}" for k, v in ASSUME.items()) + "; " +
          "; ".join(f"{g}: {v['tflops']:.0f} TFLOP/s f16 dense (cuBLASLt's best), {v['tbps']} TB/s" for g, v in GPUS.items()))
    for tower, unit in (("image", "images"), ("text", "texts")):
        print(f"\n### {tower}, batch {args.batch} (ms per pass)\n")
        ms = {g: run(tower, g, args.batch, False) for g in GPUS}
        old = {g: run(tower, g, args.batch, True) for g in GPUS}
        print("| op | kernels | GFLOP | MB | H100 before | H100 | H200 | how |")
        print("|---|---:|---:|---:|---:|---:|---:|---|")
        for a, b, c in zip(old["H100"].ops, ms["H100"].ops, ms["H200"].ops):
            name, fl, nb, t100, k, how = b
            print(f"| {name} | {k} | {fl / 1e9:.1f} | {nb / 1e6:.0f} | {a[3]:.3f} | {t100:.3f} | {c[3]:.3f} | "
                  f"{how}{' (H200: ' + c[5] + ')' if c[5] != how else ''}{' (before: ' + a[5] + ')' if a[5] else ''} |")
        for g in ("H100", "H200"):
            t, k = ms[g].total_ms()
            tb, kb = old[g].total_ms()
            print(f"\n{g}: {t:.2f} ms per pass ({k} kernels, {ASSUME['gap_us']} us apart) = "
                  f"{args.batch / t * 1e3:,.0f} {unit}/s; before: {tb:.2f} ms = {args.batch / tb * 1e3:,.0f} {unit}/s")
    for tower in ("image", "text"):
        for g in ("H100", "H200"):
            t, k = run(tower, g, 1, False).total_ms()
            tb, _ = run(tower, g, 1, True).total_ms()
            print(f"batch 1 {tower} on {g}: {t:.3f} ms ({k} kernels; before {tb:.3f} ms)")


if __name__ == "__main__":
    main()
