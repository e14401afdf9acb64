"""PyTorch baseline for `clip bench` on the GPU machine (issue 8): the same architecture
(ViT-B/32 by default) with random weights, f16, in transformers' CLIP vision and text models.
Prints JSON lines:
  - eager: images/s and 77-token texts/s per batch size, inputs already on the GPU;
  - eager_from_host: images/s at the largest batch size with the f32 pixels copied from host
    memory and cast to f16 in every pass, as `clip bench` times its own (it takes host f32
    pixels);
  - compile: the image encoder under torch.compile (static shapes) at --compile-batch only,
    since each compile takes tens of seconds.

    python3 bench/torch_gpu_baseline.py [--arch ViT-B-32] [--batch-sizes 1,64,1024] [--compile-batch 1024]

Run by bench/gpu_check.sh next to `clip bench --device cuda --dtype f16` in the same session,
so the ratio compares like with like. Needs torch and transformers (preinstalled there).
"""
import argparse
import json
import time

import torch
from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPVisionConfig, CLIPVisionModelWithProjection

ARCHS = {  # OpenAI's hyperparameters: (embed, res, patch, vision width/layers, text width/layers)
    "ViT-B-32": (512, 224, 32, 768, 12, 512, 12),
    "ViT-B-16": (512, 224, 16, 768, 12, 512, 12),
    "ViT-L-14": (768, 224, 14, 1024, 24, 768, 12),
    "ViT-L-14-336": (768, 336, 14, 1024, 24, 768, 12),
}


def timed(fn, reps):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="ViT-B-32", choices=sorted(ARCHS))
    ap.add_argument("--batch-sizes", default="1,64,1024")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--compile-batch", type=int, default=1024, help="0: no torch.compile")
    a = ap.parse_args()
    E, R, P, VW, VL, TW, TL = ARCHS[a.arch]
    dev = torch.device("cuda")
    vision = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=VW, intermediate_size=4 * VW, num_hidden_layers=VL, num_attention_heads=VW // 64,
        image_size=R, patch_size=P, projection_dim=E, hidden_act="quick_gelu")).to(dev, torch.float16).eval()
    text = CLIPTextModelWithProjection(CLIPTextConfig(
        hidden_size=TW, intermediate_size=4 * TW, num_hidden_layers=TL, num_attention_heads=TW // 64,
        max_position_embeddings=77, projection_dim=E, hidden_act="quick_gelu")).to(dev, torch.float16).eval()
    print(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "arch": a.arch}), flush=True)
    sizes = [int(x) for x in a.batch_sizes.split(",")]

    def inputs(B):
        px = torch.randn(B, 3, R, R, device=dev, dtype=torch.float16)
        ids = torch.randint(1, 49406, (B, 77), device=dev)
        ids[:, 0], ids[:, -1] = 49406, 49407
        return px, ids

    with torch.inference_mode():
        for B in sizes:
            px, ids = inputs(B)
            ti = timed(lambda: vision(pixel_values=px).image_embeds, a.reps)
            tt = timed(lambda: text(input_ids=ids).text_embeds, a.reps)
            print(json.dumps({"mode": "eager", "batch": B, "images_per_s": round(B / ti, 1),
                              "texts77_per_s": round(B / tt, 1)}), flush=True)
        B = max(sizes)
        host = torch.randn(B, 3, R, R, dtype=torch.float32)
        ti = timed(lambda: vision(pixel_values=host.to(dev).half()).image_embeds.cpu(), a.reps)
        print(json.dumps({"mode": "eager_from_host", "batch": B, "images_per_s": round(B / ti, 1)}), flush=True)
        if a.compile_batch > 0:
            B = a.compile_batch
            px, _ = inputs(B)
            t0 = time.perf_counter()
            cv = torch.compile(vision, dynamic=False)
            cv(pixel_values=px)
            torch.cuda.synchronize()
            compile_s = time.perf_counter() - t0
            ti = timed(lambda: cv(pixel_values=px).image_embeds, a.reps)
            print(json.dumps({"mode": "compile", "batch": B, "images_per_s": round(B / ti, 1),
                              "compile_s": round(compile_s, 1)}), flush=True)


if __name__ == "__main__":
    main()
