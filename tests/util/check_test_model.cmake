# ctest's setup test for the real-model tests (FIXTURES_SETUP troupe_test_model): fails,
# saying how to get it, when the model they need is missing, and then ctest runs none of
# them (each is reported "Not Run" and counts as failed).
#   cmake -D MODEL=path/to/model.gguf -P check_test_model.cmake
if(NOT EXISTS "${MODEL}")
  message(FATAL_ERROR "The real-model tests need ${MODEL}, which is missing: "
                      "run `make model` (scripts/fetch_model.sh) to fetch it, or point "
                      "-DTROUPE_TEST_MODEL at another copy when configuring.")
endif()
file(SIZE "${MODEL}" size)
message(STATUS "test model: ${MODEL} (${size} bytes)")
