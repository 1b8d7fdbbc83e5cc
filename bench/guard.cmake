# The guard's own cost over the embedded stores, next to their limits in the
# same run (see the file comment of guard_bench.cpp; figures in
# docs/benchmarks-stores.md).
#   idem_bench_guard --benchmark_repetitions=5 --benchmark_enable_random_interleaving=true
if(TARGET idem_sqlite)
  add_executable(idem_bench_guard ${CMAKE_CURRENT_LIST_DIR}/guard_bench.cpp)
  target_include_directories(idem_bench_guard PRIVATE ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(idem_bench_guard PRIVATE idem::memory idem::sqlite SQLite::SQLite3 benchmark::benchmark
                                                 idem_build_flags)
endif()
