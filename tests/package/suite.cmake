# tests/package: troupe as a CMake package, tried the way a host project would:
# - find_package: `cmake --install` of this build to a temporary prefix, examples/embed
#   configured and built there as a project of its own, and run on the tiny test model
#   (it streams one completion, cancels a second, and must exit 0);
# - add_subdirectory: a host that already has its own CAF::core adds the source tree, and
#   its configure must keep that target and leave troupe's tests, benches and apps out.
add_executable(make_tiny_model ${CMAKE_CURRENT_LIST_DIR}/make_tiny_model.cpp)
target_link_libraries(make_tiny_model PRIVATE troupe_test_util)

add_test(NAME package/find_package_builds_and_runs_the_embed_example
         COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/test_package.sh find_package ${PROJECT_BINARY_DIR}
                 ${PROJECT_SOURCE_DIR} $<TARGET_FILE:make_tiny_model>)
add_test(NAME package/add_subdirectory_keeps_the_hosts_caf_and_builds_no_tests
         COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/test_package.sh add_subdirectory ${PROJECT_BINARY_DIR}
                 ${PROJECT_SOURCE_DIR} $<TARGET_FILE:make_tiny_model>)
set_tests_properties(package/find_package_builds_and_runs_the_embed_example
                     package/add_subdirectory_keeps_the_hosts_caf_and_builds_no_tests
                     PROPERTIES LABELS package TIMEOUT 900)
