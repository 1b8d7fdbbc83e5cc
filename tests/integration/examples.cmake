# idem_example_runner runs one example program for the ctest entries that
# examples/CMakeLists.txt declares: on its default SQLite store, or on a
# redis-server it starts on a free loopback port.
add_executable(idem_example_runner ${CMAKE_CURRENT_LIST_DIR}/example_runner.cpp)
target_link_libraries(idem_example_runner PRIVATE idem_test_support idem_build_flags)
