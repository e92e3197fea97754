# CAF 0.17 ships no CMake package: find it by hand and wrap it in the imported targets
# CAF::core and CAF::io, unless the including project already has them (a host that found
# its own CAF keeps it; a host with only CAF::core gets a CAF::io that links to the host's
# core). Used by troupe's build and by the installed troupeConfig.cmake.
if(NOT TARGET CAF::core)
  find_path(CAF_INCLUDE_DIR caf/all.hpp)
  find_library(CAF_CORE_LIBRARY caf_core)
  if(NOT (CAF_INCLUDE_DIR AND CAF_CORE_LIBRARY))
    message(FATAL_ERROR "troupe needs CAF 0.17 (caf_core and caf_io): apt-get install libcaf-dev")
  endif()
  add_library(CAF::core SHARED IMPORTED)
  set_target_properties(CAF::core PROPERTIES
    IMPORTED_LOCATION "${CAF_CORE_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${CAF_INCLUDE_DIR}"
    INTERFACE_LINK_LIBRARIES Threads::Threads)
endif()
if(NOT TARGET CAF::io)
  find_library(CAF_IO_LIBRARY caf_io)
  if(NOT CAF_IO_LIBRARY)
    message(FATAL_ERROR "troupe needs CAF 0.17's caf_io (the middleman, for scale-out): apt-get install libcaf-dev")
  endif()
  add_library(CAF::io SHARED IMPORTED)
  set_target_properties(CAF::io PROPERTIES
    IMPORTED_LOCATION "${CAF_IO_LIBRARY}"
    INTERFACE_LINK_LIBRARIES CAF::core)
endif()
