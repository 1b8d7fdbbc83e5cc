# The operator's kit (ops/): `promtool check rules` and `promtool test rules`
# on the alert rules, and ops_test, which checks the Grafana dashboard and the
# rules against a real Prometheus scraping the idem tool.
set(_idem_ops_dir ${PROJECT_SOURCE_DIR}/ops)
add_test(NAME ops_alerts_check
  COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/promtool.sh check rules ${_idem_ops_dir}/prometheus/alerts.yml)
add_test(NAME ops_alerts_test
  COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/promtool.sh test rules ${_idem_ops_dir}/prometheus/alerts_test.yml)
set_tests_properties(ops_alerts_check ops_alerts_test PROPERTIES LABELS ops TIMEOUT 60 SKIP_RETURN_CODE 77)

if(TARGET idem_cli AND TARGET idem_metrics_http)
  idem_add_test(NAME ops_test
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/ops_test.cpp
    LABELS integration
    TIMEOUT 180
    DEPS idem::idem idem_test_support nlohmann_json::nlohmann_json PkgConfig::CPPHTTPLIB)
  target_compile_definitions(ops_test PRIVATE IDEM_CLI_PATH="$<TARGET_FILE:idem_cli>"
                                              IDEM_OPS_DIR="${_idem_ops_dir}")
  add_dependencies(ops_test idem_cli)
endif()
