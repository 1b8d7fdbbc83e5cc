# Unit tests of idem::http without a server: key parsing, the stored-response
# encoding, fingerprints and problem documents.
if(TARGET idem_http)
  idem_add_test(NAME http_unit_test
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/http_test.cpp
    LABELS unit
    DEPS idem::http nlohmann_json::nlohmann_json
    TIMEOUT 60)
endif()
