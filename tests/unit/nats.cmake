# The NATS consumer's rules and dead letters, without a server.
if(TARGET idem_nats)
  idem_add_test(NAME nats_policy_test
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/nats_policy_test.cpp
    LABELS unit
    DEPS idem::nats)
endif()
