# cmake -DDOXYGEN=... -DDOXYFILE=... -DOUTPUT=... -DWERROR=ON|OFF -P run_doxygen.cmake
#
# Runs Doxygen, then prints how many warnings it wrote (and how many of them
# are undocumented declarations) with the first few, so that the count is
# visible in CI while it is not yet enforced. With WERROR, any warning fails.
file(REMOVE_RECURSE ${OUTPUT})
file(MAKE_DIRECTORY ${OUTPUT})
execute_process(COMMAND ${DOXYGEN} ${DOXYFILE} RESULT_VARIABLE rc)
set(log ${OUTPUT}/warnings.log)
set(warnings "")
if(EXISTS ${log})
  # Under WARN_AS_ERROR Doxygen writes "error:" where it writes "warning:".
  file(STRINGS ${log} warnings REGEX ": (warning|error): ")
endif()
list(LENGTH warnings total)
set(undocumented ${warnings})
list(FILTER undocumented INCLUDE REGEX "is not documented|not documented\\.")
list(LENGTH undocumented undocumented_count)
message(STATUS "API reference: ${OUTPUT}/html/index.html")
message(STATUS "Doxygen warnings: ${total} (undocumented declarations: ${undocumented_count}); full list: ${log}")
list(SUBLIST warnings 0 10 first)
foreach(line IN LISTS first)
  message(STATUS "  ${line}")
endforeach()
# With WERROR, Doxygen itself exits non-zero on a warning: name the cause
# before reporting the exit status.
if(WERROR AND total GREATER 0)
  message(FATAL_ERROR "IDEM_DOCS_WERROR: ${total} Doxygen warnings (see above and ${log})")
endif()
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "doxygen failed (exit ${rc})")
endif()
if(NOT EXISTS ${OUTPUT}/html/index.html)
  message(FATAL_ERROR "doxygen wrote no ${OUTPUT}/html/index.html")
endif()
