# Embedded stores versus their limit (raw libsqlite3 with the same SQL).
#   idem_bench_stores --benchmark_format=json > stores.json
if(TARGET idem_sqlite)
  add_executable(idem_bench_stores ${CMAKE_CURRENT_LIST_DIR}/stores_bench.cpp)
  target_include_directories(idem_bench_stores PRIVATE ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(idem_bench_stores PRIVATE idem::memory idem::sqlite SQLite::SQLite3 benchmark::benchmark
                                                  idem_build_flags)
endif()
