# Redis integration tests: each binary starts its own redis-server processes
# on free loopback ports (skipped when redis-server is missing, failed when
# IDEM_REQUIRE_SERVERS=1).
if(TARGET idem_redis)
  add_library(idem_redis_test_support STATIC ${CMAKE_CURRENT_LIST_DIR}/redis_support.cpp)
  target_include_directories(idem_redis_test_support PUBLIC ${PROJECT_SOURCE_DIR}/tests ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(idem_redis_test_support PUBLIC idem::redis idem_test_support PkgConfig::HIREDIS
                        PRIVATE idem_build_flags)

  idem_add_test(NAME redis_store_test
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/redis_store_test.cpp
    LABELS integration
    DEPS idem_redis_test_support
    TIMEOUT 300)
  # The contract suite (sync and async) and the client under concurrency:
  # `conformance`, so that the ASan+UBSan and TSan stages run them too.
  if(TARGET idem_contract_suite)
    idem_add_test(NAME redis_contract_test
      SOURCES ${CMAKE_CURRENT_LIST_DIR}/redis_contract_test.cpp
      LABELS conformance
      DEPS idem_contract_suite idem_redis_test_support
      TIMEOUT 600)
  endif()
endif()

if(TARGET idem_redis AND TARGET idem_contract_suite)
  idem_add_test(NAME redis_tls_test
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/redis_tls_test.cpp
    LABELS integration
    DEPS idem_contract_suite idem_redis_test_support
    TIMEOUT 300)
endif()

if(TARGET idem_redis)
  idem_add_test(NAME redis_fault_test
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/redis_fault_test.cpp
    LABELS integration
    DEPS idem_redis_test_support
    TIMEOUT 300)
endif()

if(TARGET idem_redis AND TARGET idem_contract_suite)
  idem_add_test(NAME redis_sentinel_test
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/redis_sentinel_test.cpp
    LABELS integration
    DEPS idem_contract_suite idem_redis_test_support
    TIMEOUT 300)
endif()

if(TARGET idem_redis AND TARGET idem_contract_suite)
  idem_add_test(NAME redis_cluster_test
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/redis_cluster_test.cpp
    LABELS integration
    DEPS idem_contract_suite idem_redis_test_support
    TIMEOUT 300)
endif()

# Migration from the original Python module (issue 15): its records read in
# place, and a mixed fleet with a Python consumer (redis_mixed_fleet.py, run
# with /usr/bin/python3 and Debian's python3-redis).
if(TARGET idem_redis)
  idem_add_test(NAME redis_migration_test
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/redis_migration_test.cpp
    LABELS integration
    DEPS idem_redis_test_support
    TIMEOUT 180)
  target_compile_definitions(redis_migration_test PRIVATE
    IDEM_MIXED_FLEET_SCRIPT="${CMAKE_CURRENT_LIST_DIR}/redis_mixed_fleet.py")
  if(TARGET idem_cli)
    add_dependencies(redis_migration_test idem_cli)
    target_compile_definitions(redis_migration_test PRIVATE IDEM_CLI_PATH="$<TARGET_FILE:idem_cli>")
  endif()
endif()

# The Redis store's pure parts (record codec, server clock, tokens): no server.
if(TARGET idem_redis)
  idem_add_test(NAME redis_unit_test
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/redis_unit_test.cpp
    LABELS unit
    DEPS idem::redis
    TIMEOUT 120)
endif()
