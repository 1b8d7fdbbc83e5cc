# NATS JetStream integration tests: each binary starts its own nats-server -js
# on a free loopback port with a temp store dir (skipped when nats-server is
# missing, failed when IDEM_REQUIRE_SERVERS=1).
if(TARGET idem_nats)
  add_library(idem_nats_integration_support STATIC ${CMAKE_CURRENT_LIST_DIR}/nats_support.cpp)
  target_include_directories(idem_nats_integration_support PUBLIC ${PROJECT_SOURCE_DIR}/tests ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(idem_nats_integration_support PUBLIC idem::nats idem_nats_test_support PkgConfig::LIBNATS
                        PRIVATE idem_build_flags)

  idem_add_test(NAME nats_consumer_test
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/nats_consumer_test.cpp
    LABELS integration
    DEPS idem_nats_integration_support idem::memory
    TIMEOUT 180)
endif()

# The `idem nats-worker` / `nats-publish` commands as real processes.
if(TARGET idem_nats AND TARGET idem_cli)
  idem_add_test(NAME nats_worker_test
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/nats_worker_test.cpp
    LABELS integration
    DEPS idem_nats_integration_support idem::idem
    TIMEOUT 300)
  target_compile_definitions(nats_worker_test PRIVATE IDEM_CLI_PATH="$<TARGET_FILE:idem_cli>")
  add_dependencies(nats_worker_test idem_cli)
  # --ledger-table against a real PostgreSQL (exactly once across kills).
  if(TARGET idem_postgres_test_support)
    target_link_libraries(nats_worker_test PRIVATE idem_postgres_test_support)
    target_compile_definitions(nats_worker_test PRIVATE IDEM_NATS_TEST_HAVE_POSTGRES=1)
  endif()
endif()

# Example 6 against a nats-server of its own (the store-only example runner
# cannot give it one). examples/ is added after tests/: the target is
# resolved at generate time.
if(TARGET idem_nats AND IDEM_BUILD_EXAMPLES)
  idem_add_test(NAME nats_example_test
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/nats_example_test.cpp
    LABELS examples
    DEPS idem_nats_integration_support
    TIMEOUT 120)
  target_compile_definitions(nats_example_test PRIVATE IDEM_EXAMPLE_PATH="$<TARGET_FILE:example_nats_consumer>")
  add_dependencies(nats_example_test example_nats_consumer)
endif()
