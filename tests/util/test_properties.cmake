# Read by ctest (from the include files of troupe_discover_tests, tests/CMakeLists.txt)
# before a binary's tests: gives each test its labels, timeout and fixture from the
# variables the include file sets:
#   troupe_labels, troupe_timeout                 every test case of the binary, except
#   troupe_real_model_regex                       the cases (names without the folder) that
#                                                 need the real model, which get instead
#   troupe_real_model_labels, troupe_real_model_timeout, and FIXTURES_REQUIRED troupe_test_model
#   troupe_qwen_model_regex                       the cases that need the Qwen model: labels
#                                                 real_model and qwen_model,
#                                                 troupe_qwen_model_timeout, FIXTURES_REQUIRED troupe_qwen_model
# Every test also fails when its run ran no test case (doctest exits 0 then).
function(troupe_test_properties test case)
  if(NOT troupe_qwen_model_regex STREQUAL "" AND case MATCHES "${troupe_qwen_model_regex}")
    set_tests_properties("${test}" PROPERTIES LABELS "real_model;qwen_model"
                         TIMEOUT "${troupe_qwen_model_timeout}" FIXTURES_REQUIRED troupe_qwen_model)
  elseif(NOT troupe_real_model_regex STREQUAL "" AND case MATCHES "${troupe_real_model_regex}")
    set_tests_properties("${test}" PROPERTIES LABELS "${troupe_real_model_labels}"
                         TIMEOUT "${troupe_real_model_timeout}" FIXTURES_REQUIRED troupe_test_model)
  else()
    set_tests_properties("${test}" PROPERTIES LABELS "${troupe_labels}" TIMEOUT "${troupe_timeout}")
  endif()
  set_tests_properties("${test}" PROPERTIES FAIL_REGULAR_EXPRESSION "test cases: +0 [|]")
endfunction()
