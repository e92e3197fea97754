# tests/scripts: the repository's shell scripts, run offline (label fast).
add_test(NAME scripts/fetch_model_arguments_and_refusals
         COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/test_fetch_model.sh ${PROJECT_SOURCE_DIR})
set_tests_properties(scripts/fetch_model_arguments_and_refusals PROPERTIES LABELS fast TIMEOUT 60)
