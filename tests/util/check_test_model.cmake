# ctest's setup test for the real-model tests (FIXTURES_SETUP troupe_test_model): fails,
# saying how to get it, when the model they need is missing, and then ctest runs none of
# them (each is reported "Not Run" and counts as failed).
#   cmake -D MODEL=path/to/model.gguf [-D FETCH=short-name] -P check_test_model.cmake
# FETCH is the model's name for scripts/fetch_model.sh (default: the default model).
if(NOT EXISTS "${MODEL}")
  if(FETCH)
    message(FATAL_ERROR "The ${FETCH} tests need ${MODEL}, which is missing: run "
                        "`make test-models` (scripts/fetch_model.sh ${FETCH}) to fetch it, or point "
                        "-DTROUPE_TEST_QWEN_MODEL at another copy when configuring.")
  endif()
  message(FATAL_ERROR "The real-model tests need ${MODEL}, which is missing: "
                      "run `make model` (scripts/fetch_model.sh) to fetch it, or point "
                      "-DTROUPE_TEST_MODEL at another copy when configuring.")
endif()
file(SIZE "${MODEL}" size)
message(STATUS "test model: ${MODEL} (${size} bytes)")
