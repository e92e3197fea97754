#!/usr/bin/env bash
# usage: test_package.sh find_package|add_subdirectory BUILD_DIR SOURCE_DIR MAKE_TINY_MODEL
# See suite.cmake beside this file. Everything happens in a temporary folder that is removed.
set -euo pipefail
mode=$1
build_dir=$(cd "$2" && pwd) source_dir=$(cd "$3" && pwd) make_tiny_model=$(realpath "$4")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

case $mode in
  find_package)
    cmake --install "$build_dir" --prefix "$work/prefix" > "$work/install.log"
    for f in include/troupe/actors/engine.hpp include/troupe/embed/engine_factory.hpp \
             lib/cmake/troupe/troupeConfig.cmake lib/cmake/troupe/troupeConfigVersion.cmake; do
      [[ -f $work/prefix/$f ]] || { echo "not installed: $f"; exit 1; }
    done
    if find "$work/prefix/include" -maxdepth 1 -mindepth 1 | grep -qv '/troupe$'; then
      echo "headers installed outside include/troupe:"; find "$work/prefix/include" -maxdepth 1 -mindepth 1; exit 1
    fi
    cmake -S "$source_dir/examples/embed" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
          -DCMAKE_PREFIX_PATH="$work/prefix" > "$work/configure.log" || { cat "$work/configure.log"; exit 1; }
    cmake --build "$work/build" -j "$(nproc)" > "$work/build.log" 2>&1 || { tail -50 "$work/build.log"; exit 1; }
    "$make_tiny_model" "$work/tiny.gguf"
    (cd "$work" && timeout 300 "$work/build/embed_demo" --troupe.model="$work/tiny.gguf" --troupe.threads=1 \
        --troupe.max-model-len=256 --prompt="the cat sat") | tee "$work/run.log"
    grep -q '^embed_demo: ok$' "$work/run.log"
    grep -q '\[long: [0-9]* tokens, cancelled\]' "$work/run.log"
    ;;
  add_subdirectory)
    mkdir -p "$work/host"
    cat > "$work/host/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.25)
project(host LANGUAGES C CXX)
find_package(Threads REQUIRED)
# The host's own CAF target, made before troupe is added: troupe must use it, not redefine it.
find_library(HOST_CAF_CORE caf_core REQUIRED)
find_path(HOST_CAF_INCLUDE caf/all.hpp REQUIRED)
add_library(CAF::core SHARED IMPORTED)
set_target_properties(CAF::core PROPERTIES IMPORTED_LOCATION "\${HOST_CAF_CORE}"
  INTERFACE_INCLUDE_DIRECTORIES "\${HOST_CAF_INCLUDE}" INTERFACE_LINK_LIBRARIES Threads::Threads
  HOST_MARKER "made by the host")
add_subdirectory("$source_dir" troupe)
get_target_property(marker CAF::core HOST_MARKER)
if(NOT marker STREQUAL "made by the host")
  message(FATAL_ERROR "troupe replaced the host's CAF::core")
endif()
foreach(t test_model test_actors troupe bench_serving troupe-load)
  if(TARGET \${t})
    message(FATAL_ERROR "troupe as a subproject defined \${t}: tests, benches and apps must default off")
  endif()
endforeach()
foreach(t troupe::troupe troupe::actors troupe::embed)
  if(NOT TARGET \${t})
    message(FATAL_ERROR "troupe as a subproject has no \${t}")
  endif()
endforeach()
if(DEFINED CACHE{CMAKE_BUILD_TYPE})
  get_property(type CACHE CMAKE_BUILD_TYPE PROPERTY VALUE)
  if(NOT type STREQUAL "")
    message(FATAL_ERROR "troupe set the host's CMAKE_BUILD_TYPE to '\${type}'")
  endif()
endif()
add_executable(host_app "$source_dir/examples/embed/main.cpp")
target_link_libraries(host_app PRIVATE troupe::troupe)
CMAKE
    cmake -S "$work/host" -B "$work/build" > "$work/configure.log" 2>&1 || { cat "$work/configure.log"; exit 1; }
    echo "add_subdirectory: configured with the host's CAF::core, no tests, benches or apps"
    ;;
  *)
    echo "unknown mode $mode"; exit 2 ;;
esac
