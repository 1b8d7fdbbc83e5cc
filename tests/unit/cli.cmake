# Unit tests of the metrics registry, the /metrics server (loopback only) and
# the tracing/logging observers.

idem_add_test(NAME metrics_test
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/metrics_test.cpp
  LABELS unit
  DEPS idem::idem)
if(TARGET idem_metrics_http)
  target_link_libraries(metrics_test PRIVATE idem::metrics_http PkgConfig::CPPHTTPLIB)
  target_compile_definitions(metrics_test PRIVATE IDEM_TEST_METRICS_HTTP=1)
endif()
idem_add_test(NAME tracing_test
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/tracing_test.cpp
  LABELS unit
  DEPS idem::idem nlohmann_json::nlohmann_json)
idem_add_test(NAME store_metrics_test
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/store_metrics_test.cpp
  LABELS unit
  TIMEOUT 60
  DEPS idem::idem)
