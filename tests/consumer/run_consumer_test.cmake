# run_consumer_test.cmake — the packaging test (ctest: consumer_find_package).
#
#   cmake -DIDEM_BINARY_DIR=<idem build> -DCONSUMER_SOURCE_DIR=<this dir> -DWORK_DIR=<scratch>
#         [-DMODES=find_package;add_subdirectory] -P run_consumer_test.cmake
#
# find_package: installs the Idem build into WORK_DIR/prefix, then configures,
# builds and runs the consumer against that prefix only.
# add_subdirectory: builds the consumer with Idem's source tree added as a
# subdirectory (only the linked targets are built).
# Any failing step stops the script with FATAL_ERROR and the step's output.
cmake_minimum_required(VERSION 3.25)

foreach(var IDEM_BINARY_DIR CONSUMER_SOURCE_DIR WORK_DIR)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "run_consumer_test.cmake: -D${var}=... is required")
  endif()
endforeach()
if(NOT DEFINED MODES)
  set(MODES find_package add_subdirectory)
endif()

# Build the consumer with the compiler, generator and build type of the Idem
# build under test, so that the static libraries link.
function(read_cache name out)
  file(STRINGS "${IDEM_BINARY_DIR}/CMakeCache.txt" line REGEX "^${name}:[A-Z]+=")
  string(REGEX REPLACE "^${name}:[A-Z]+=" "" value "${line}")
  set(${out} "${value}" PARENT_SCOPE)
endfunction()
if(NOT EXISTS "${IDEM_BINARY_DIR}/CMakeCache.txt")
  message(FATAL_ERROR "no CMakeCache.txt in IDEM_BINARY_DIR=${IDEM_BINARY_DIR}")
endif()
read_cache(CMAKE_GENERATOR generator)
read_cache(CMAKE_CXX_COMPILER cxx)
read_cache(CMAKE_C_COMPILER cc)
read_cache(CMAKE_BUILD_TYPE build_type)
read_cache(CMAKE_HOME_DIRECTORY idem_source_dir)
read_cache(IDEM_WITH_POSTGRES with_postgres)
if(build_type STREQUAL "")
  set(build_type RelWithDebInfo)
endif()

# step(<name> <command...>): runs a command, echoes its output, fails loudly.
function(step name)
  message(STATUS "consumer test: ${name}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message("${out}")
    message(FATAL_ERROR "consumer test: step '${name}' failed (exit ${rc}): ${ARGN}")
  endif()
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

set(configure_common -G "${generator}" -DCMAKE_BUILD_TYPE=${build_type} -DCMAKE_CXX_COMPILER=${cxx})
set(configure_c)  # Idem's own project also compiles C; the consumer alone does not
if(NOT cc STREQUAL "")
  set(configure_c -DCMAKE_C_COMPILER=${cc})
endif()

if("find_package" IN_LIST MODES)
  set(prefix "${WORK_DIR}/prefix")
  set(build "${WORK_DIR}/find_package-build")
  # Start clean: a stale prefix could hide a header that is no longer installed.
  file(REMOVE_RECURSE "${prefix}" "${build}")
  step("install into ${prefix}" ${CMAKE_COMMAND} --install "${IDEM_BINARY_DIR}" --prefix "${prefix}")
  set(required_headers include/idem/idem.h include/idem/stores/memory.h include/idem/stores/sqlite.h)
  if(with_postgres)
    list(APPEND required_headers include/idem/stores/postgres.h)
  endif()
  foreach(required ${required_headers})
    if(NOT EXISTS "${prefix}/${required}")
      message(FATAL_ERROR "consumer test: ${required} was not installed")
    endif()
  endforeach()
  step("configure (find_package)" ${CMAKE_COMMAND} -S "${CONSUMER_SOURCE_DIR}" -B "${build}" ${configure_common}
       -DIDEM_CONSUMER_MODE=find_package "-DCMAKE_PREFIX_PATH=${prefix}"
       # Only the prefix: never a package registry or the build tree.
       -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF)
  step("build (find_package)" ${CMAKE_COMMAND} --build "${build}" --parallel 2)
  step("run (find_package)" "${build}/idem_consumer" "${build}/consumer.db")
  message(STATUS "${step_output}")
  if(with_postgres AND NOT step_output MATCHES "postgres component OK")
    message(FATAL_ERROR "consumer test: the installed postgres component was not found or not used")
  endif()
endif()

if("add_subdirectory" IN_LIST MODES)
  set(build "${WORK_DIR}/add_subdirectory-build")
  file(REMOVE_RECURSE "${build}")
  step("configure (add_subdirectory)" ${CMAKE_COMMAND} -S "${CONSUMER_SOURCE_DIR}" -B "${build}" ${configure_common} ${configure_c}
       -DIDEM_CONSUMER_MODE=add_subdirectory "-DIDEM_SOURCE_DIR=${idem_source_dir}")
  step("build (add_subdirectory)" ${CMAKE_COMMAND} --build "${build}" --target idem_consumer --parallel 2)
  step("run (add_subdirectory)" "${build}/idem_consumer" "${build}/consumer.db")
  message(STATUS "${step_output}")
endif()

message(STATUS "consumer test: passed (${MODES})")
