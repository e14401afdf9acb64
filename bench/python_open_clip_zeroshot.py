"""Zero-shot classification of the golden images, written as open_clip's README does it.
bench/python_open_clip.py runs this file on open_clip and, with only its import changed, on
clip_engine.open_clip. Usage: python python_open_clip_zeroshot.py CHECKPOINT IMAGES_DIR"""
import json
import os
import sys

import torch
from PIL import Image
import open_clip

checkpoint, images_dir = sys.argv[1], sys.argv[2]
labels = ["a photo of a cat", "a photo of a dog", "a cup of coffee", "an astronaut", "a diagram",
          "a photo of a camera", "a landscape", "a black and white photo"]

model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=checkpoint)
model.eval()
tokenizer = open_clip.get_tokenizer("ViT-B-32")
text = tokenizer(labels)

results = {}
for name in sorted(os.listdir(images_dir)):
    if not name.lower().endswith((".jpg", ".png", ".bmp")):
        continue
    image = preprocess(Image.open(os.path.join(images_dir, name))).unsqueeze(0)
    with torch.no_grad():
        image_features = model.encode_image(image)
        text_features = model.encode_text(text)
        image_features /= image_features.norm(dim=-1, keepdim=True)
        text_features /= text_features.norm(dim=-1, keepdim=True)
        text_probs = (100.0 * image_features @ text_features.T).softmax(dim=-1)
    results[name] = text_probs[0].tolist()
    print(f"{name}: {labels[int(text_probs[0].argmax())]} ({float(text_probs[0].max()):.4f})", file=sys.stderr)

print(json.dumps(results))
