# PostgreSQL integration tests: each binary starts one PostgreSQL 15 of its
# own (initdb in a temp dir, a free loopback port, the postgres user when run
# as root); skipped without PostgreSQL unless IDEM_REQUIRE_SERVERS=1.
if(TARGET idem_postgres AND TARGET idem_postgres_test_support)
  idem_add_test(NAME postgres_store_test
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/postgres_store_test.cpp
    LABELS integration
    DEPS idem_contract_suite idem_postgres_test_support idem::postgres idem::idem
    TIMEOUT 300)
endif()

if(TARGET idem_postgres AND TARGET idem_postgres_test_support)
  idem_add_test(NAME postgres_transaction_test
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/postgres_transaction_test.cpp
    LABELS integration
    DEPS idem_postgres_test_support idem::postgres idem::memory
    TIMEOUT 300)
endif()
