# The one contract suite every store runs (see store_contract.h). Defined in
# the first conformance fragment so that the store fragments can link it.
add_library(idem_contract_suite STATIC ${CMAKE_CURRENT_LIST_DIR}/store_contract.cpp)
target_include_directories(idem_contract_suite PUBLIC ${PROJECT_SOURCE_DIR}/tests)
target_link_libraries(idem_contract_suite PUBLIC idem::core GTest::gtest PRIVATE idem_build_flags)
