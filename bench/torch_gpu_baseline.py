"""PyTorch baseline for `clip bench` on the GPU machine (issue 8): the same architecture
(ViT-B/32 by default) with random weights, f16, in transformers' CLIP vision and text models,
eager and torch.compile. Prints images/s and texts/s per batch size as JSON lines.

    python3 bench/torch_gpu_baseline.py [--arch ViT-B-32] [--batch-sizes 1,64,1024] [--no-compile]

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
    ap.add_argument("--no-compile", action="store_true")
    a = ap.parse_args()
    E, R, P, VW, VL, TW, TL = ARCHS[a.arch]
    dev = torch.device("cuda")
    vision = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=VW, intermediate_size=4 * VW, num_hidden_layers=VL, num_attention_heads=VW // 64,
        image_size=R, patch_size=P, projection_dim=E, hidden_act="quick_gelu")).to(dev, torch.float16).eval()
    text = CLIPTextModelWithProjection(CLIPTextConfig(
        hidden_size=TW, intermediate_size=4 * TW, num_hidden_layers=TL, num_attention_heads=TW // 64,
        max_position_embeddings=77, projection_dim=E, hidden_act="quick_gelu")).to(dev, torch.float16).eval()
    modes = [("eager", vision, text)]
    if not a.no_compile:
        modes.append(("compile", torch.compile(vision), torch.compile(text)))
    print(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "arch": a.arch}), flush=True)
    with torch.inference_mode():
        for mode, v, t in modes:
            for B in [int(x) for x in a.batch_sizes.split(",")]:
                px = torch.randn(B, 3, R, R, device=dev, dtype=torch.float16)
                ids = torch.randint(1, 49406, (B, 77), device=dev)
                ids[:, 0], ids[:, -1] = 49406, 49407
                ti = timed(lambda: v(pixel_values=px).image_embeds, a.reps)
                tt = timed(lambda: t(input_ids=ids).text_embeds, a.reps)
                print(json.dumps({"mode": mode, "batch": B, "images_per_s": round(B / ti, 1),
                                  "texts77_per_s": round(B / tt, 1)}), flush=True)


if __name__ == "__main__":
    main()
