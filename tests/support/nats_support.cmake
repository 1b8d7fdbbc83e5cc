# idem_nats_test_support: the nats-server fixture (NatsServer), for the NATS
# integration tests and the NATS benchmark. It needs no nats.c itself.
add_library(idem_nats_test_support STATIC ${CMAKE_CURRENT_LIST_DIR}/nats_server.cpp)
target_include_directories(idem_nats_test_support PUBLIC ${PROJECT_SOURCE_DIR}/tests)
target_link_libraries(idem_nats_test_support PUBLIC idem_test_support PRIVATE idem_build_flags)
