# Third-party packages, all from Debian 12 (scripts/install_deps.sh installs them).
include(${CMAKE_CURRENT_LIST_DIR}/troupeFindCAF.cmake)
find_package(Boost 1.81 CONFIG REQUIRED)
find_package(simdjson CONFIG REQUIRED)
if(TROUPE_BUILD_TESTS)
  find_package(doctest CONFIG REQUIRED)
  include(doctest)
endif()
