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
  # Its crash test runs the exactly-once worker (declared below).
  target_compile_definitions(postgres_transaction_test
    PRIVATE IDEM_PG_WORKER_PATH="$<TARGET_FILE:postgres_exactly_once_worker>")
endif()

# Exactly-once under SIGKILL: the supervisor test and its worker program.
if(TARGET idem_postgres AND TARGET idem_postgres_test_support)
  add_executable(postgres_exactly_once_worker ${CMAKE_CURRENT_LIST_DIR}/postgres_exactly_once_worker.cpp)
  target_link_libraries(postgres_exactly_once_worker PRIVATE idem::postgres idem_build_flags)
  idem_add_test(NAME postgres_exactly_once_test
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/postgres_exactly_once_test.cpp
    LABELS integration
    DEPS idem_postgres_test_support idem::postgres
    TIMEOUT 300)
  target_compile_definitions(postgres_exactly_once_test
    PRIVATE IDEM_PG_WORKER_PATH="$<TARGET_FILE:postgres_exactly_once_worker>")
  add_dependencies(postgres_exactly_once_test postgres_exactly_once_worker)
  add_dependencies(postgres_transaction_test postgres_exactly_once_worker)
endif()
