# Core unit tests: pure, no I/O beyond the memory store.
idem_add_test(NAME core_unit_test
  SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/envelope_test.cpp
    ${CMAKE_CURRENT_LIST_DIR}/key_test.cpp
    ${CMAKE_CURRENT_LIST_DIR}/error_test.cpp
    ${CMAKE_CURRENT_LIST_DIR}/limits_test.cpp
    ${CMAKE_CURRENT_LIST_DIR}/fingerprint_test.cpp
  LABELS unit
  DEPS idem::core nlohmann_json::nlohmann_json)

idem_add_test(NAME patterns_unit_test
  SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/checker_test.cpp
    ${CMAKE_CURRENT_LIST_DIR}/processor_test.cpp
    ${CMAKE_CURRENT_LIST_DIR}/processor_async_test.cpp
    ${CMAKE_CURRENT_LIST_DIR}/handler_test.cpp
  LABELS unit
  DEPS idem::idem)
