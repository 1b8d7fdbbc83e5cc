# Contract suite instantiations for the embedded stores.
idem_add_test(NAME memory_contract_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/memory_contract_test.cpp ${CMAKE_CURRENT_LIST_DIR}/async_as_sync_store_test.cpp
  LABELS conformance
  DEPS idem_contract_suite idem::memory)
if(TARGET idem_sqlite)
  idem_add_test(NAME sqlite_contract_test
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/sqlite_contract_test.cpp
    LABELS conformance
    DEPS idem_contract_suite idem::sqlite)
endif()
