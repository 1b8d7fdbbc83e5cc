# idem::http on real loopback servers: the middleware in-process on every
# store (memory, SQLite, a redis-server and a PostgreSQL the test starts), and the real
# `idem webhook-demo` binary (cpp-httplib clients, curl, a Redis killed and
# restarted under load).
if(TARGET idem_http)
  idem_add_test(NAME http_middleware_test
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/http_middleware_test.cpp
    LABELS integration
    DEPS idem::http idem::idem idem_test_support nlohmann_json::nlohmann_json
    TIMEOUT 180)
  if(TARGET idem_redis)
    # idem_redis_test_support is declared by redis.cmake (included after this).
    target_link_libraries(http_middleware_test PRIVATE idem_redis_test_support)
    target_compile_definitions(http_middleware_test PRIVATE IDEM_TEST_REDIS=1)
  endif()
  if(TARGET idem_postgres_test_support)
    target_link_libraries(http_middleware_test PRIVATE idem_postgres_test_support)
    target_compile_definitions(http_middleware_test PRIVATE IDEM_TEST_POSTGRES=1)
  endif()
endif()

if(TARGET idem_http AND TARGET idem_cli)
  idem_add_test(NAME http_demo_test
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/http_demo_test.cpp
    LABELS integration
    DEPS idem::idem idem_test_support nlohmann_json::nlohmann_json PkgConfig::CPPHTTPLIB
    TIMEOUT 240)
  target_compile_definitions(http_demo_test PRIVATE IDEM_CLI_PATH="$<TARGET_FILE:idem_cli>")
  add_dependencies(http_demo_test idem_cli)
  if(TARGET idem_redis)
    target_link_libraries(http_demo_test PRIVATE idem_redis_test_support)
    target_compile_definitions(http_demo_test PRIVATE IDEM_TEST_REDIS=1)
  endif()
endif()

