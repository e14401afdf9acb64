#!/usr/bin/env bash
# weights/download.sh against a Hub served from files (HF_ENDPOINT=file://...): `hub` lays the
# snapshot out in the Hugging Face cache where --model hf-hub:ORG/NAME finds it, with refs/main
# and refs/REV; `open_clip` fetches the snapshot's files into a directory and converts it; a
# wrong --sha256 fails. The model: ../shared/golden/zoo/zoo-vit-hw104 (skipped without it).
#   tests/check_download.sh PROJECT_DIR CLIP_BIN
set -euo pipefail
proj="$1"; clip_bin="$2"
golden="${CLIP_GOLDEN_DIR:-$proj/../shared/golden}"
model="$golden/zoo/zoo-vit-hw104"
if [ ! -d "$model" ]; then echo "no $model: skipped"; exit 0; fi
t="$(mktemp -d)"; trap 'rm -rf "$t"' EXIT
sha=0123456789abcdef0123456789abcdef01234567
mkdir -p "$t/hub/api/models/laion/tiny/revision" "$t/hub/laion/tiny/resolve/$sha"
echo "{\"id\": \"laion/tiny\", \"sha\": \"$sha\"}" > "$t/hub/api/models/laion/tiny/revision/main"
echo "{\"id\": \"laion/tiny\", \"sha\": \"$sha\"}" > "$t/hub/api/models/laion/tiny/revision/v1"
cp "$model"/open_clip_config.json "$model"/open_clip_pytorch_model.bin "$t/hub/laion/tiny/resolve/$sha/"
ln -s "$sha" "$t/hub/laion/tiny/resolve/main"
export HF_ENDPOINT="file://$t/hub" CLIP_BIN="$clip_bin"
fail() { echo "FAIL: $*" >&2; exit 1; }

HF_HUB_CACHE="$t/cache" bash "$proj/weights/download.sh" hub laion/tiny > "$t/out" 2>&1 || { cat "$t/out"; fail "hub"; }
[ "$(cat "$t/cache/models--laion--tiny/refs/main")" = "$sha" ] || fail "refs/main"
cmp "$model/open_clip_pytorch_model.bin" "$t/cache/models--laion--tiny/snapshots/$sha/open_clip_pytorch_model.bin" ||
  fail "the snapshot's weights"
HF_HUB_CACHE="$t/cache" "$clip_bin" info hf-hub:laion/tiny | grep -q "heads 2" || fail "clip info hf-hub:laion/tiny"
HF_HUB_CACHE="$t/cache" bash "$proj/weights/download.sh" hub laion/tiny@v1 > "$t/out" 2>&1 || { cat "$t/out"; fail "hub @v1"; }
[ "$(cat "$t/cache/models--laion--tiny/refs/v1")" = "$sha" ] || fail "refs/v1"
if HF_HUB_CACHE="$t/cache2" bash "$proj/weights/download.sh" hub laion/tiny --sha256 0000 > "$t/out" 2>&1; then
  fail "a wrong --sha256 was accepted"
fi
grep -q "SHA-256 mismatch" "$t/out" || fail "the mismatch message"
if HF_HUB_CACHE="$t/cache3" bash "$proj/weights/download.sh" hub laion/absent > "$t/out" 2>&1; then
  fail "a repository the Hub lacks was accepted"
fi
grep -q "no commit for laion/absent" "$t/out" || fail "the missing repository's message"

mkdir -p "$t/models"
cp "$golden/../clip/bpe_simple_vocab_16e6.txt.gz" "$t/models/" 2>/dev/null || true
bash "$proj/weights/download.sh" open_clip laion/tiny "$t/models" > "$t/out" 2>&1 || { cat "$t/out"; fail "open_clip"; }
[ -s "$t/models/tiny.clip" ] || fail "no tiny.clip"
"$clip_bin" info "$t/models/tiny.clip" | grep -q "width 208, layers 2, heads 2" || fail "clip info tiny.clip"
echo "download.sh: hub and open_clip layouts ok"
