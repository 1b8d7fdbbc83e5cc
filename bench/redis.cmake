# Redis store benchmark; needs the test support library (server fixture).
if(TARGET idem_redis AND TARGET idem_redis_test_support)
  add_executable(redis_bench ${CMAKE_CURRENT_LIST_DIR}/redis_bench.cpp)
  target_link_libraries(redis_bench PRIVATE idem_redis_test_support benchmark::benchmark idem_build_flags)
endif()
