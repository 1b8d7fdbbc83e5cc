# idem_test_support: ServerProcess, TempDir, free_port() and IDEM_SKIP_OR_FAIL
# for integration tests that start real servers (redis, postgres, nats).
add_library(idem_test_support STATIC ${CMAKE_CURRENT_LIST_DIR}/server_process.cpp)
target_include_directories(idem_test_support PUBLIC ${PROJECT_SOURCE_DIR}/tests)
target_link_libraries(idem_test_support PUBLIC GTest::gtest PRIVATE idem_build_flags)
target_compile_features(idem_test_support PUBLIC cxx_std_20)
