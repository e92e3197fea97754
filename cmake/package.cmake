# The library as a package: troupe::<folder> per source folder and troupe::troupe for all
# of them, the same names in the build tree (for add_subdirectory) and after
# `cmake --install` (for find_package(troupe)). Headers install as include/troupe/<folder>/.
set(troupe_library_folders model cpu engine grammar actors config gpu cluster net embed)
set(troupe_installed_targets)
foreach(folder ${troupe_library_folders})
  set_target_properties(troupe_${folder} PROPERTIES EXPORT_NAME ${folder})
  add_library(troupe::${folder} ALIAS troupe_${folder})
  list(APPEND troupe_installed_targets troupe_${folder})
endforeach()
# The CUDA kernels are a static library troupe_gpu links privately: installed with it.
if(TARGET troupe_gpu_kernels)
  set_target_properties(troupe_gpu_kernels PROPERTIES EXPORT_NAME gpu_kernels)
  list(APPEND troupe_installed_targets troupe_gpu_kernels)
endif()

add_library(troupe_all INTERFACE)
set_target_properties(troupe_all PROPERTIES EXPORT_NAME troupe)
target_link_libraries(troupe_all INTERFACE troupe_embed troupe_net troupe_cluster troupe_config troupe_actors troupe_cpu troupe_gpu
                                           troupe_engine troupe_grammar troupe_model CAF::core)
add_library(troupe::troupe ALIAS troupe_all)
list(APPEND troupe_installed_targets troupe_all)

if(NOT TROUPE_INSTALL)
  return()
endif()

include(CMakePackageConfigHelpers)
set(troupe_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/troupe)
install(TARGETS ${troupe_installed_targets} EXPORT troupeTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/src/troupe DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        FILES_MATCHING PATTERN "*.hpp" PATTERN "*.h" PATTERN "*.cuh")
install(EXPORT troupeTargets NAMESPACE troupe:: DESTINATION ${troupe_cmake_dir})
if(TARGET troupe_gpu_kernels)
  set(TROUPE_PACKAGE_HAS_CUDA ON)
else()
  set(TROUPE_PACKAGE_HAS_CUDA OFF)
endif()
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/troupeConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/troupeConfig.cmake
                              INSTALL_DESTINATION ${troupe_cmake_dir})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/troupeConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/troupeConfig.cmake ${PROJECT_BINARY_DIR}/troupeConfigVersion.cmake
              ${PROJECT_SOURCE_DIR}/cmake/troupeFindCAF.cmake
        DESTINATION ${troupe_cmake_dir})
