# Third-party packages, all from Debian 12. CAF 0.17 ships no CMake config, so it is found
# by hand and wrapped in imported targets.
find_path(CAF_INCLUDE_DIR caf/all.hpp)
find_library(CAF_CORE_LIBRARY caf_core)
find_library(CAF_IO_LIBRARY caf_io)
if(CAF_INCLUDE_DIR AND CAF_CORE_LIBRARY AND CAF_IO_LIBRARY)
  add_library(CAF::core SHARED IMPORTED)
  set_target_properties(CAF::core PROPERTIES
    IMPORTED_LOCATION "${CAF_CORE_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${CAF_INCLUDE_DIR}"
    INTERFACE_LINK_LIBRARIES Threads::Threads)
  add_library(CAF::io SHARED IMPORTED)
  set_target_properties(CAF::io PROPERTIES
    IMPORTED_LOCATION "${CAF_IO_LIBRARY}"
    INTERFACE_LINK_LIBRARIES CAF::core)
  set(TROUPE_HAVE_CAF ON)
else()
  message(FATAL_ERROR "CAF 0.17 not found: apt-get install libcaf-dev (or run `make deps`)")
endif()

find_package(Boost 1.81 CONFIG REQUIRED)
find_package(simdjson CONFIG REQUIRED)
if(TROUPE_BUILD_TESTS)
  find_package(doctest CONFIG REQUIRED)
  include(doctest)
endif()
