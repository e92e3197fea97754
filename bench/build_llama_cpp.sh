#!/usr/bin/env bash
# Builds llama.cpp's native tools (llama-bench, llama-perplexity, llama-tokenize,
# llama-cli, llama-server, llama-completion) from the llama.cpp sources vendored in the
# llama-cpp-python source distribution on PyPI, and llama-quantize (requantized copies of a
# model for the speed tables). llama.cpp is only a peer to compare
# against: nothing here is linked into troupe, and third_party/ is gitignored.
#
# Usage: bench/build_llama_cpp.sh [--quick]
#   --quick           build only llama-bench, llama-perplexity and llama-tokenize
# Environment:
#   LLAMA_CPP_PY_VERSION  llama-cpp-python version (default 0.3.36)
#   LLAMA_CPP_PY_SDIST    path to a local copy of the sdist tarball (skips the download)
#   LLAMA_CPP_DIR         where to unpack and build (default third_party/llama.cpp)
#   JOBS                  parallel build jobs (default nproc)
#
# Idempotent: if every requested binary exists already, it only prints their paths.
# Binaries end up in $LLAMA_CPP_DIR/build/bin/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

version=${LLAMA_CPP_PY_VERSION:-0.3.36}
dir=${LLAMA_CPP_DIR:-$root/third_party/llama.cpp}
jobs=${JOBS:-$(nproc)}
build=$dir/build
bin=$build/bin

quick_targets=(llama-bench llama-perplexity llama-tokenize)
full_targets=(llama-cli llama-server llama-completion llama-quantize)
targets=("${quick_targets[@]}")
if [[ ${1:-} != --quick ]]; then targets+=("${full_targets[@]}"); fi

say() { echo "build_llama_cpp: $*"; }

print_paths() {
  say "binaries in $bin:"
  for t in "${targets[@]}"; do
    if [[ -x $bin/$t ]]; then echo "  $bin/$t"; else echo "  (missing) $bin/$t"; fi
  done
}

all_present() {
  for t in "${targets[@]}"; do [[ -x $bin/$t ]] || return 1; done
  return 0
}

if all_present; then
  say "already built (delete $build to rebuild)"
  print_paths
  exit 0
fi

# One build at a time: a second caller waits for the first one to finish.
mkdir -p "$dir"
exec 9>"$dir/.build.lock"
if ! flock -n 9; then
  say "another build_llama_cpp.sh is running; waiting for it"
  flock 9
  if all_present; then print_paths; exit 0; fi
fi

# 1. The source distribution: a local copy if given, else pip download from PyPI.
src=$dir/src/llama_cpp_python-$version
if [[ ! -f $src/vendor/llama.cpp/CMakeLists.txt ]]; then
  mkdir -p "$dir/dl" "$dir/src"
  sdist=${LLAMA_CPP_PY_SDIST:-}
  if [[ -z $sdist ]]; then
    sdist=$(ls "$dir"/dl/llama_cpp_python-"$version".tar.gz 2>/dev/null | head -n 1 || true)
  fi
  if [[ -z $sdist ]]; then
    say "downloading llama-cpp-python==$version (sdist) from PyPI"
    python3 -m pip download --quiet --no-deps --no-binary :all: --disable-pip-version-check \
      "llama-cpp-python==$version" -d "$dir/dl"
    sdist=$(ls "$dir"/dl/llama_cpp_python-"$version".tar.gz | head -n 1)
  fi
  [[ -f $sdist ]] || { say "sdist not found: $sdist" >&2; exit 1; }
  say "unpacking $sdist"
  rm -rf "$src.part" && mkdir -p "$src.part"
  tar -xzf "$sdist" -C "$src.part" --strip-components=1
  [[ -f $src.part/vendor/llama.cpp/CMakeLists.txt ]] || {
    say "$sdist has no vendor/llama.cpp/CMakeLists.txt" >&2; exit 1; }
  rm -rf "$src" && mv "$src.part" "$src"
fi
llsrc=$src/vendor/llama.cpp

# 2. Configure. Options differ between llama.cpp versions: pass only those that exist.
has_option() { grep -rqs "option($1\b" "$llsrc/CMakeLists.txt" "$llsrc/ggml/CMakeLists.txt"; }
opts=(-DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF)
for o in LLAMA_BUILD_TESTS LLAMA_BUILD_EXAMPLES LLAMA_CURL LLAMA_OPENSSL \
         LLAMA_BUILD_UI LLAMA_USE_PREBUILT_UI LLAMA_BUILD_APP; do
  if has_option "$o"; then opts+=("-D$o=OFF"); fi
done
# Server and cli are only generated when LLAMA_BUILD_SERVER is on (the default standalone).
for o in LLAMA_BUILD_TOOLS LLAMA_BUILD_SERVER; do
  if has_option "$o"; then opts+=("-D$o=ON"); fi
done
# (The sdist carries vendor/llama.cpp/.git with its git data, so llama.cpp's build info
# reports the real vendored llama.cpp commit, not troupe's.)
gen=()
if [[ ! -f $build/CMakeCache.txt ]] && command -v ninja >/dev/null; then gen=(-G Ninja); fi

say "configuring $llsrc -> $build"
say "cmake options: ${opts[*]}"
cmake -S "$llsrc" -B "$build" "${gen[@]}" "${opts[@]}" >"$dir/configure.log" 2>&1 || {
  tail -n 40 "$dir/configure.log" >&2; say "configure failed, see $dir/configure.log" >&2; exit 1; }

# 3. Build the benchmark tools first (llama-bench is what bench/compare_llama_cpp.sh needs),
#    then the server and cli.
build_targets() {
  local want=()
  for t in "$@"; do [[ -x $bin/$t ]] || want+=("$t"); done
  ((${#want[@]})) || return 0
  say "building ${want[*]} with -j$jobs (slow on a small machine; log: $dir/build.log)"
  cmake --build "$build" -j "$jobs" --target "${want[@]}" >>"$dir/build.log" 2>&1 || {
    tail -n 40 "$dir/build.log" >&2; say "build failed, see $dir/build.log" >&2; exit 1; }
}
: >"$dir/build.log"
start=$(date +%s)
build_targets "${quick_targets[@]}"
if [[ ${1:-} != --quick ]]; then build_targets "${full_targets[@]}"; fi
say "build took $(( $(date +%s) - start )) s"

print_paths
all_present || { say "some binaries are missing" >&2; exit 1; }
say "llama.cpp version: $("$bin/llama-bench" --version 2>&1 | head -n 2 | tr '\n' ' ')"
