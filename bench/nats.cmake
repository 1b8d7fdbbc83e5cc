# NATS consumer throughput next to a bare fetch+ack consumer (docs/nats.md).
# Needs the test fixtures (nats-server, redis-server), so only with tests.
if(TARGET idem_nats AND TARGET idem_nats_integration_support AND TARGET idem_redis_test_support)
  add_executable(nats_bench ${CMAKE_CURRENT_LIST_DIR}/nats_bench.cpp)
  target_include_directories(nats_bench PRIVATE ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR}/tests)
  target_link_libraries(nats_bench PRIVATE idem_nats_integration_support idem_redis_test_support idem::idem
                                           benchmark::benchmark idem_build_flags)
endif()
