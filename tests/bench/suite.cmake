# bench/test_compare_report.py: the comparison benchmark's rate search and ratio arithmetic
# on known inputs (plain Python, no server, no timing).
find_package(Python3 COMPONENTS Interpreter)
if(Python3_Interpreter_FOUND)
  add_test(NAME bench/test_compare_report
           COMMAND ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/bench/test_compare_report.py)
  set_tests_properties(bench/test_compare_report PROPERTIES LABELS fast TIMEOUT ${TROUPE_UNIT_TEST_TIMEOUT})
endif()
