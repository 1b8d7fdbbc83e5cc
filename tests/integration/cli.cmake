# Runs the real `idem` binary (path compiled in) against SQLite files and
# memory://, and against a redis-server and a PostgreSQL it starts when those
# stores are built (skipped without the servers unless IDEM_REQUIRE_SERVERS=1).
if(TARGET idem_cli)
  idem_add_test(NAME cli_test
    SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/integration/cli_test.cpp
    LABELS integration
    DEPS idem::idem nlohmann_json::nlohmann_json)
  target_compile_definitions(cli_test PRIVATE IDEM_CLI_PATH="$<TARGET_FILE:idem_cli>")
  add_dependencies(cli_test idem_cli)
  if(TARGET idem_redis)
    # idem_redis_test_support is declared by redis.cmake (included after this).
    target_link_libraries(cli_test PRIVATE idem_redis_test_support)
    target_compile_definitions(cli_test PRIVATE IDEM_TEST_REDIS=1)
  endif()
  if(TARGET idem_postgres_test_support)
    target_link_libraries(cli_test PRIVATE idem_postgres_test_support)
    target_compile_definitions(cli_test PRIVATE IDEM_TEST_POSTGRES=1)
  endif()
endif()
