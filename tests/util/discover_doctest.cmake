# Lists the test cases of a doctest binary and writes the ctest script that registers one
# ctest test per case. troupe_discover_tests (tests/CMakeLists.txt) runs it after each
# build of the binary, in place of doctest's doctestAddTests.cmake, which splits a test
# case name at every ';' into tests that match no case and so pass without running any.
#
#   cmake -D EXECUTABLE=path -D WORKING_DIR=dir -D PREFIX=folder/ -D OUT=file -P discover_doctest.cmake
#
# Each test is followed by a call troupe_test_properties(NAME CASE), which the file that
# includes OUT defines (tests/util/test_properties.cmake): labels and timeouts are applied
# when ctest reads the tests, so a change to them needs no rebuild of the binary.
foreach(var EXECUTABLE WORKING_DIR OUT)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "discover_doctest.cmake: ${var} is not set")
  endif()
endforeach()

execute_process(COMMAND "${EXECUTABLE}" --list-test-cases
                OUTPUT_VARIABLE output ERROR_VARIABLE errors RESULT_VARIABLE result
                WORKING_DIRECTORY "${WORKING_DIR}")
if(NOT result EQUAL 0)
  message(FATAL_ERROR "${EXECUTABLE} --list-test-cases failed (${result}):\n${output}\n${errors}")
endif()

# While the output is a CMake list, the characters that list splitting treats specially
# (';', and '[', ']' and '\' around it) stand in as ASCII control characters; each name
# gets them back in the written script, where it is one bracket argument.
string(ASCII 28 semicolon_)
string(ASCII 29 open_bracket_)
string(ASCII 30 close_bracket_)
string(ASCII 31 backslash_)
string(REPLACE ";" "${semicolon_}" output "${output}")
string(REPLACE "[" "${open_bracket_}" output "${output}")
string(REPLACE "]" "${close_bracket_}" output "${output}")
string(REPLACE "\\" "${backslash_}" output "${output}")
string(REPLACE "\n" ";" lines "${output}")

set(script "")
set(count 0)
foreach(line IN LISTS lines)
  string(REPLACE "${semicolon_}" ";" name "${line}")
  string(REPLACE "${open_bracket_}" "[" name "${name}")
  string(REPLACE "${close_bracket_}" "]" name "${name}")
  string(REPLACE "${backslash_}" "\\" name "${name}")
  if(name STREQUAL "" OR name MATCHES "^===+$" OR name MATCHES "^\\[doctest\\] ")
    continue()
  endif()
  if(name MATCHES "]==]")
    message(FATAL_ERROR "${EXECUTABLE}: a test case name holds ']==]': ${name}")
  endif()
  # doctest splits a --test-case filter at commas that are not escaped.
  string(REPLACE "," "\\," filter "${name}")
  string(APPEND script
    "add_test([==[${PREFIX}${name}]==] [==[${EXECUTABLE}]==] [==[--test-case=${filter}]==])\n"
    "set_tests_properties([==[${PREFIX}${name}]==] PROPERTIES WORKING_DIRECTORY [==[${WORKING_DIR}]==])\n"
    "troupe_test_properties([==[${PREFIX}${name}]==] [==[${name}]==])\n")
  math(EXPR count "${count} + 1")
endforeach()
if(count EQUAL 0)
  message(FATAL_ERROR "${EXECUTABLE} lists no test cases")
endif()
file(WRITE "${OUT}" "${script}")
