# PostgreSQL store versus its limit (raw libpq running the same SQL), on a
# server the binary starts itself (see docs/postgres.md).
#   postgres_bench --benchmark_out=pg.json --benchmark_out_format=json
if(TARGET idem_postgres AND TARGET idem_postgres_test_support)
  add_executable(postgres_bench ${CMAKE_CURRENT_LIST_DIR}/postgres_bench.cpp)
  target_include_directories(postgres_bench PRIVATE ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(postgres_bench PRIVATE idem::postgres idem_postgres_test_support benchmark::benchmark
                                               idem_build_flags)
endif()
