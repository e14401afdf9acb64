#!/usr/bin/env bash
# Downloads a CLIP checkpoint, verifies its SHA-256, and converts it to our native file.
#
#   weights/download.sh ViT-B/32|ViT-B/16|ViT-L/14|ViT-L/14@336px [OUT_DIR]
#   weights/download.sh RN50|RN101|RN50x4|RN50x16|RN50x64 [OUT_DIR]
#   weights/download.sh hf <hf-repo, e.g. openai/clip-vit-base-patch32> [OUT_DIR] [--sha256 HASH]
#   weights/download.sh open_clip <hf-repo, e.g. laion/CLIP-ViT-H-14-laion2B-s32B-b79K> [OUT_DIR] [--sha256 HASH]
#   weights/download.sh hub <hf-repo>[@REV] [--sha256 HASH]
#
# OpenAI's files are checked against the SHA-256 in their URL (as openai/CLIP's clip.py does).
# Hugging Face files have no hash published outside the Hub: pass the weights file's SHA-256
# (shown on its Hub page) with --sha256 to check it; without it the computed hash is printed.
# open_clip: the Hub snapshot's open_clip_config.json with open_clip_model.safetensors (or
# open_clip_pytorch_model.bin), and its tokenizer files when it has them, into OUT_DIR/NAME.
# hub: the repository's files, either layout, into the local Hugging Face cache as huggingface_hub
# lays it out ($HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub:
# models--ORG--NAME/snapshots/COMMIT/ and refs/REV), where --model hf-hub:ORG/NAME[@REV] finds it;
# nothing is converted. HF_ENDPOINT replaces https://huggingface.co (a mirror).
# Needs curl, sha256sum and the clip binary (CLIP_BIN, default build/clip).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
clip_bin="${CLIP_BIN:-$here/build/clip}"
base="https://openaipublic.azureedge.net/clip/models"
vocab_url="https://github.com/openai/CLIP/raw/main/clip/bpe_simple_vocab_16e6.txt.gz"

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
hf="${HF_ENDPOINT:-https://huggingface.co}"
[ $# -ge 1 ] || usage

fetch() {  # url dest
  if [ -s "$2" ]; then echo "have $2"; return; fi
  echo "downloading $1"
  curl -fL --retry 3 -o "$2.part" "$1"
  mv "$2.part" "$2"
}
try_fetch() {  # url dest: as fetch, but a file the repository does not have is not an error
  if [ -s "$2" ]; then echo "have $2"; return 0; fi
  if curl -fsL --retry 3 -o "$2.part" "$1"; then mv "$2.part" "$2"; echo "downloaded $1"; return 0; fi
  rm -f "$2.part"
  return 1
}
first_of() {  # url-base dir file...: the first of the files the repository has, fetched; its name printed
  local base="$1" dir="$2" f; shift 2
  for f in "$@"; do
    if try_fetch "$base/$f" "$dir/$f" >&2; then echo "$f"; return 0; fi
  done
  return 1
}
check() {  # file expected-sha256 (may be empty)
  local got
  got="$(sha256sum "$1" | cut -d' ' -f1)"
  if [ -z "$2" ]; then
    echo "sha256 $1: $got (no expected hash given; pass --sha256 to verify)"
  elif [ "$got" != "$2" ]; then
    echo "SHA-256 mismatch for $1: got $got, expected $2" >&2
    exit 1
  else
    echo "sha256 ok: $1"
  fi
}

kind="$1"
case "$kind" in
  ViT-B/32) sha=40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af; file=ViT-B-32.pt ;;
  ViT-B/16) sha=5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f; file=ViT-B-16.pt ;;
  ViT-L/14) sha=b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836; file=ViT-L-14.pt ;;
  ViT-L/14@336px) sha=3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02; file=ViT-L-14-336px.pt ;;
  RN50) sha=afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762; file=RN50.pt ;;
  RN101) sha=8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599; file=RN101.pt ;;
  RN50x4) sha=7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd; file=RN50x4.pt ;;
  RN50x16) sha=52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa; file=RN50x16.pt ;;
  RN50x64) sha=be1cfb55d75a9666199fb2206c106743da0f6468c9d327f3e0d0a543a9919d9c; file=RN50x64.pt ;;
  hf|open_clip|hub) ;;
  *) echo "unknown model '$kind'" >&2; usage ;;
esac
[ -x "$clip_bin" ] || { echo "no clip binary at $clip_bin (build it, or set CLIP_BIN)" >&2; exit 1; }

if [ "$kind" = hub ]; then
  [ $# -ge 2 ] || usage
  repo="${2%@*}"; rev=main
  [ "$repo" != "$2" ] && rev="${2#*@}"
  shift 2
  want=""
  while [ $# -gt 0 ]; do
    case "$1" in --sha256) want="$2"; shift 2 ;; *) usage ;; esac
  done
  case "$repo" in */*) ;; *) echo "hub: want ORG/NAME[@REV], got '$repo'" >&2; exit 2 ;; esac
  cache="${HF_HUB_CACHE:-${HF_HOME:+$HF_HOME/hub}}"
  cache="${cache:-$HOME/.cache/huggingface/hub}"
  commit="$(curl -fsL --retry 3 "$hf/api/models/$repo/revision/$rev" | sed -n 's/.*"sha" *: *"\([0-9a-f]\{40\}\)".*/\1/p' | head -n1 || true)"
  [ -n "$commit" ] || { echo "hub: no commit for $repo at revision $rev ($hf/api/models/$repo/revision/$rev)" >&2; exit 1; }
  repo_dir="$cache/models--${repo%%/*}--${repo#*/}"
  snap="$repo_dir/snapshots/$commit"
  mkdir -p "$snap" "$repo_dir/refs"
  url="$hf/$repo/resolve/$commit"
  if try_fetch "$url/open_clip_config.json" "$snap/open_clip_config.json"; then
    weights="$(first_of "$url" "$snap" open_clip_model.safetensors open_clip_pytorch_model.bin)" ||
      { echo "hub: $repo has open_clip_config.json but neither open_clip_model.safetensors nor open_clip_pytorch_model.bin" >&2; exit 1; }
  else
    fetch "$url/config.json" "$snap/config.json"
    try_fetch "$url/preprocessor_config.json" "$snap/preprocessor_config.json" || true
    weights="$(first_of "$url" "$snap" model.safetensors pytorch_model.bin)" ||
      { echo "hub: $repo has neither open_clip_config.json nor model.safetensors / pytorch_model.bin" >&2; exit 1; }
  fi
  for f in vocab.json merges.txt tokenizer.json; do try_fetch "$url/$f" "$snap/$f" || true; done
  check "$snap/$weights" "$want"
  # Don't rewrite refs/main when REV is the commit itself (huggingface_hub does the same).
  [ "$rev" = "$commit" ] || printf '%s' "$commit" > "$repo_dir/refs/$rev"
  spec="hf-hub:$repo"; [ "$rev" = main ] || spec="$spec@$rev"
  "$clip_bin" info "$spec" | sed -n '1,12p'
  echo "use it as: --model $spec"
  exit 0
fi

if [ "$kind" = hf ] || [ "$kind" = open_clip ]; then
  [ $# -ge 2 ] || usage
  repo="$2"; shift 2
  out=models
  if [ $# -ge 1 ] && [ "${1#--}" = "$1" ]; then out="$1"; shift; fi
  want=""
  while [ $# -gt 0 ]; do
    case "$1" in --sha256) want="$2"; shift 2 ;; *) usage ;; esac
  done
  name="$(basename "$repo")"
  dir="$out/$name"
  mkdir -p "$dir"
  url="$hf/$repo/resolve/main"
  if [ "$kind" = hf ]; then
    for f in config.json preprocessor_config.json vocab.json merges.txt; do fetch "$url/$f" "$dir/$f"; done
    weights="$(first_of "$url" "$dir" model.safetensors pytorch_model.bin)" ||
      { echo "$repo has neither model.safetensors nor pytorch_model.bin" >&2; exit 1; }
    check "$dir/$weights" "$want"
    "$clip_bin" convert "$dir" -o "$out/$name.clip"
  else
    fetch "$url/open_clip_config.json" "$dir/open_clip_config.json"
    weights="$(first_of "$url" "$dir" open_clip_model.safetensors open_clip_pytorch_model.bin)" ||
      { echo "$repo has neither open_clip_model.safetensors nor open_clip_pytorch_model.bin" >&2; exit 1; }
    check "$dir/$weights" "$want"
    vocab=()
    if ! { try_fetch "$url/vocab.json" "$dir/vocab.json" && try_fetch "$url/merges.txt" "$dir/merges.txt"; }; then
      fetch "$vocab_url" "$out/bpe_simple_vocab_16e6.txt.gz"
      vocab=(--vocab "$out/bpe_simple_vocab_16e6.txt.gz")
    fi
    # The directory: its config, weights and tokenizer read together.
    "$clip_bin" convert "$dir" "${vocab[@]}" -o "$out/$name.clip"
  fi
else
  out="${2:-models}"
  mkdir -p "$out"
  fetch "$base/$sha/$file" "$out/$file"
  check "$out/$file" "$sha"
  fetch "$vocab_url" "$out/bpe_simple_vocab_16e6.txt.gz"
  "$clip_bin" convert "$out/$file" --vocab "$out/bpe_simple_vocab_16e6.txt.gz" -o "$out/${file%.pt}.clip"
fi
"$clip_bin" info "$out"/*.clip | sed -n '1,12p'
