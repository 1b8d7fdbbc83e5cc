# idem_postgres_test_support: PostgresServer (initdb + postgres on a free
# loopback port, as the postgres user when run as root) for the PostgreSQL
# tests and benchmark.
if(TARGET idem_postgres)
  add_library(idem_postgres_test_support STATIC ${CMAKE_CURRENT_LIST_DIR}/postgres_server.cpp)
  target_include_directories(idem_postgres_test_support PUBLIC ${PROJECT_SOURCE_DIR}/tests)
  target_link_libraries(idem_postgres_test_support PUBLIC idem_test_support PkgConfig::LIBPQ PRIVATE idem_build_flags)
endif()
