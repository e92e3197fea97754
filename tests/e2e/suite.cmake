# tests/e2e/test_*.py: end-to-end tests in Python (the OpenAI client, a WebSocket client,
# headless Chromium, the load driver) against the real `troupe` binary. Each script takes
# --troupe BINARY --model GGUF [--build-dir DIR], starts `troupe serve --port 0` itself,
# and exits 0 on success; a missing model fails, saying to run `make model`.
# scripts/install_test_deps.sh installs what they import.
find_package(Python3 COMPONENTS Interpreter)
if(Python3_Interpreter_FOUND)
  file(GLOB troupe_e2e_python_tests CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/e2e/test_*.py)
  foreach(script ${troupe_e2e_python_tests})
    get_filename_component(name ${script} NAME_WE)
    add_test(NAME e2e/${name}
             COMMAND ${Python3_EXECUTABLE} ${script} --troupe $<TARGET_FILE:troupe>
                     --model ${TROUPE_TEST_MODEL} --build-dir ${PROJECT_BINARY_DIR})
    set_tests_properties(e2e/${name} PROPERTIES LABELS "e2e;real_model" TIMEOUT ${TROUPE_E2E_SCRIPT_TIMEOUT}
                         FIXTURES_REQUIRED troupe_test_model)
  endforeach()
endif()
