# Unit tests of the embedded stores' specifics (ManualClock, no servers).
idem_add_test(NAME memory_store_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/memory_store_test.cpp
  LABELS unit
  DEPS idem::memory)
if(TARGET idem_sqlite)
  idem_add_test(NAME sqlite_store_test
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/sqlite_store_test.cpp
    LABELS unit
    DEPS idem::sqlite SQLite::SQLite3)
endif()
