# Helpers that declare every Idem target the same way: one source of compiler
# flags, one way to add a library component or a test.

add_library(idem_build_flags INTERFACE)
target_compile_options(idem_build_flags INTERFACE
  $<$<COMPILE_LANG_AND_ID:CXX,GNU,Clang>:-Wall -Wextra -Wpedantic -Wconversion -Wsign-conversion -Wshadow
    -Wnon-virtual-dtor -Wold-style-cast -Woverloaded-virtual>
  # GCC 12 reports -Wnull-dereference inside inlined libstdc++ code at -O2
  # (std::string moves in CLI11's headers), which -Werror turns into a failed
  # CI build; clang's version of the warning has no such false positives.
  $<$<COMPILE_LANG_AND_ID:CXX,Clang>:-Wnull-dereference>
  $<$<BOOL:${IDEM_WERROR}>:-Werror>)
if(IDEM_SANITIZE)
  target_compile_options(idem_build_flags INTERFACE -fsanitize=${IDEM_SANITIZE} -fno-omit-frame-pointer
    -fno-sanitize-recover=all)
  target_link_options(idem_build_flags INTERFACE -fsanitize=${IDEM_SANITIZE})
endif()
# Flags are for our own targets only; the exported targets carry none.
install(TARGETS idem_build_flags EXPORT idemTargets)

# idem_add_library(NAME <component> SOURCES ... HEADERS ... [PUBLIC_DEPS ...] [PRIVATE_DEPS ...])
# Creates target idem_<component>, alias idem::<component>, export name <component>.
function(idem_add_library)
  cmake_parse_arguments(ARG "" "NAME" "SOURCES;HEADERS;PUBLIC_DEPS;PRIVATE_DEPS" ${ARGN})
  set(target idem_${ARG_NAME})
  add_library(${target} ${ARG_SOURCES})
  add_library(idem::${ARG_NAME} ALIAS ${target})
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${ARG_NAME} OUTPUT_NAME idem_${ARG_NAME}
                                             CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)
  target_include_directories(${target}
    PUBLIC $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include> $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>
    PRIVATE ${PROJECT_SOURCE_DIR}/src)
  target_compile_features(${target} PUBLIC cxx_std_20)
  target_link_libraries(${target} PUBLIC ${ARG_PUBLIC_DEPS} PRIVATE ${ARG_PRIVATE_DEPS} $<BUILD_INTERFACE:idem_build_flags>)
  if(IDEM_INSTALL)
    install(TARGETS ${target} EXPORT idemTargets
            ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
    foreach(header ${ARG_HEADERS})
      get_filename_component(dir ${header} DIRECTORY)
      install(FILES ${PROJECT_SOURCE_DIR}/include/${header} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/${dir})
    endforeach()
  endif()
endfunction()

# idem_add_test(NAME <name> SOURCES ... LABELS ... [DEPS ...] [TIMEOUT s])
# One gtest executable, registered with ctest as one test (labelled) so that
# `ctest -L unit` needs no server and the summary line counts binaries.
function(idem_add_test)
  cmake_parse_arguments(ARG "" "NAME;TIMEOUT" "SOURCES;LABELS;DEPS" ${ARGN})
  add_executable(${ARG_NAME} ${ARG_SOURCES})
  target_include_directories(${ARG_NAME} PRIVATE ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR}/tests)
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gmock GTest::gtest_main idem_build_flags)
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  add_test(NAME ${ARG_NAME} COMMAND ${ARG_NAME} --gtest_brief=1)
  # Integration tests skip when a server binary is missing, unless
  # IDEM_REQUIRE_SERVERS=1 (set by CI) turns the skip into a failure.
  set_tests_properties(${ARG_NAME} PROPERTIES LABELS "${ARG_LABELS}" TIMEOUT ${ARG_TIMEOUT})
endfunction()
