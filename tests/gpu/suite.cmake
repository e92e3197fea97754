# tests/gpu: the CUDA backend's CPU-side tests (shared per-element math against the CPU
# backend, the sampling searches against the CPU sampler, and the host logic behind a
# simulated device). They need no GPU and always run; tests/gpu/run.sh is for GPU machines.
file(GLOB troupe_gpu_test_sources CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/*.cpp)
add_executable(test_gpu ${troupe_gpu_test_sources})
target_link_libraries(test_gpu PRIVATE troupe_test_util troupe_gpu troupe_cpu troupe_engine troupe_actors)
troupe_discover_tests(test_gpu PREFIX "gpu/")
set_property(GLOBAL APPEND PROPERTY troupe_fast_test_targets test_gpu)

# On a GPU only (not registered with ctest): the CUDA backend against llama.cpp's goldens.
add_executable(test_gpu_device ${CMAKE_CURRENT_LIST_DIR}/device/test_gpu_device.cpp)
target_link_libraries(test_gpu_device PRIVATE troupe_test_util troupe_gpu troupe_cpu troupe_engine simdjson::simdjson)
