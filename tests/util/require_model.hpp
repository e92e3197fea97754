// TROUPE_REQUIRE_MODEL(): the first line of a test case that needs the real model
// (TROUPE_TEST_MODEL); TROUPE_REQUIRE_QWEN_MODEL() likewise for TROUPE_TEST_QWEN_MODEL. Without the model the test fails, naming the path and how to fetch
// it; a test that needs the model never passes by skipping. (ctest also runs the setup
// test real_model/test_model_present first; see tests/CMakeLists.txt.)
#pragma once
#include <doctest/doctest.h>

#include <filesystem>

#define TROUPE_REQUIRE_MODEL()                                                    \
  REQUIRE_MESSAGE(std::filesystem::exists(TROUPE_TEST_MODEL),                     \
                  "this test needs the model " TROUPE_TEST_MODEL                  \
                  ", which is missing: run `make model` (scripts/fetch_model.sh)")

#define TROUPE_REQUIRE_QWEN_MODEL()                                                   \
  REQUIRE_MESSAGE(std::filesystem::exists(TROUPE_TEST_QWEN_MODEL),                    \
                  "this test needs the model " TROUPE_TEST_QWEN_MODEL                 \
                  ", which is missing: run `make test-models` "                       \
                  "(scripts/fetch_model.sh qwen2.5-coder-0.5b)")
