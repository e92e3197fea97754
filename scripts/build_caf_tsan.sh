#!/usr/bin/env bash
# Builds CAF 0.17.6 (libcaf_core and libcaf_io, the version Debian 12 packages) with
# ThreadSanitizer into PREFIX (default build-tsan/caf), for `make check-tsan`.
#
# Why: Debian's libcaf is compiled without ThreadSanitizer, so the hand-offs inside it (an
# actor object passed from the spawning thread to a worker through CAF's job queue, message
# reference counts, the clock's timers) are invisible, and every actor's first run looks
# like a race with its constructor. Against an instrumented CAF those reports go away and
# what is left is about troupe's own code.
#
# The source is Debian's copy of the upstream release (deb.debian.org, the URL apt uses),
# checked against its sha256. Nothing is built again when PREFIX already holds the build.
#
#   scripts/build_caf_tsan.sh [PREFIX]      (JOBS=N for parallel jobs, default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=$(realpath -m "${1:-build-tsan/caf}")
version=0.17.6
sha256=e2bf5bd243f08bb7d8adde197cfe3e6d71314ed3378fe0692f8932f4c3b3928c
url=http://deb.debian.org/debian/pool/main/a/actor-framework/actor-framework_${version}.orig.tar.gz

if [[ -f $prefix/.built-$version ]]; then
  echo "build_caf_tsan: CAF $version with ThreadSanitizer already in $prefix"
  exit 0
fi
work=$prefix.work
mkdir -p "$work"
tarball=$work/caf-$version.tar.gz
if [[ ! -f $tarball ]] || ! echo "$sha256  $tarball" | sha256sum -c --quiet - 2>/dev/null; then
  echo "build_caf_tsan: downloading $url"
  if ! python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' \
      "$url" "$tarball.part"; then
    echo "build_caf_tsan: cannot download CAF's source from $url" >&2
    exit 1
  fi
  mv "$tarball.part" "$tarball"
fi
if ! echo "$sha256  $tarball" | sha256sum -c --quiet -; then
  echo "build_caf_tsan: $tarball does not have the expected sha256 $sha256" >&2
  exit 1
fi
rm -rf "$work/src" "$work/build"
mkdir -p "$work/src"
tar xzf "$tarball" -C "$work/src" --strip-components=1
# -O1 -g1 as troupe's sanitizer builds; no examples, tests, tools, OpenSSL, OpenCL or Python.
# GCC 12 needs <limits> that libcaf_io/caf/io/network/receive_buffer.hpp does not include.
cmake -S "$work/src" -B "$work/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  "-DCMAKE_CXX_FLAGS=-fsanitize=thread -include limits" "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1" \
  "-DCMAKE_SHARED_LINKER_FLAGS=-fsanitize=thread" -DCMAKE_INSTALL_PREFIX="$prefix" \
  -DCAF_NO_EXAMPLES=yes -DCAF_NO_UNIT_TESTS=yes -DCAF_NO_OPENSSL=yes -DCAF_NO_OPENCL=yes \
  -DCAF_NO_PYTHON=yes -DCAF_NO_TOOLS=yes -DCAF_NO_SUMMARY=yes -DCAF_NO_COMPILER_CHECK=yes >/dev/null
cmake --build "$work/build" -j "${JOBS:-2}"
cmake --install "$work/build" >/dev/null
rm -rf "$work/src" "$work/build"
touch "$prefix/.built-$version"
echo "build_caf_tsan: CAF $version with ThreadSanitizer installed in $prefix"
