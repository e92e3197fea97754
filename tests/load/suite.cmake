# tests/load: the load driver's workload parsing, request plan, percentiles, report and
# wire decoding, against known inputs (no server).
troupe_test_suite(load troupe_load_driver)
target_compile_definitions(test_load PRIVATE
  TROUPE_LOAD_WORKLOADS_DIR="${PROJECT_SOURCE_DIR}/examples/load_driver/workloads")
