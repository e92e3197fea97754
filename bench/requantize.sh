#!/usr/bin/env bash
# Makes requantized copies of a GGUF model with llama.cpp's llama-quantize, for the kernel
# speed tables (formats the model is not published in here, e.g. SmolLM2-135M as Q4_0 and
# Q8_0). Requantizing an already quantized file loses quality: use the copies for speed
# comparisons only, and say in results that they are requantized.
#
# Usage: bench/requantize.sh SRC.gguf TYPE [TYPE ...]
#   writes SRC's folder/<SRC name without .gguf>.requant-TYPE.gguf for each TYPE
#   (llama-quantize type names: Q4_0, Q8_0, Q4_K_M, ...); an existing copy is kept.
# Builds llama-quantize first if it is missing (bench/build_llama_cpp.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
if (($# < 2)); then
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
src=$1
shift
[[ -f $src ]] || { echo "requantize: $src not found (scripts/fetch_model.sh fetches the models)" >&2; exit 1; }
quantize=${LLAMA_CPP_DIR:-third_party/llama.cpp}/build/bin/llama-quantize
[[ -x $quantize ]] || bench/build_llama_cpp.sh >&2
for type in "$@"; do
  dest=${src%.gguf}.requant-$type.gguf
  if [[ -f $dest ]]; then
    echo "$dest"
    continue
  fi
  "$quantize" --allow-requantize "$src" "$dest.part" "$type" >"$dest.log" 2>&1 || {
    tail -n 20 "$dest.log" >&2
    echo "requantize: llama-quantize failed for $type (log: $dest.log)" >&2
    rm -f "$dest.part"
    exit 1
  }
  mv "$dest.part" "$dest"
  rm -f "$dest.log"
  echo "$dest"
done
