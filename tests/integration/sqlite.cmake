# Several processes on one SQLite file (fork()ed workers); needs no server.
if(TARGET idem_sqlite)
  idem_add_test(NAME sqlite_multiprocess_test
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/sqlite_multiprocess_test.cpp
    LABELS integration
    DEPS idem::sqlite)
endif()
