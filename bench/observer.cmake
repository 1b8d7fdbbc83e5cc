# Cost of metrics and logging hooks on the memory store's hot path.
#   idem_bench_observer --benchmark_enable_random_interleaving=true --benchmark_repetitions=20 --benchmark_report_aggregates_only=true | grep _min
add_executable(idem_bench_observer ${CMAKE_CURRENT_LIST_DIR}/observer_bench.cpp)
target_link_libraries(idem_bench_observer PRIVATE idem::memory benchmark::benchmark idem_build_flags)
