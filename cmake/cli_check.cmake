cmake_minimum_required(VERSION 3.16)
# Checks the command line of one program of examples/ or bench/: --help
# prints the usage on stdout and exits 0; an unknown option prints it on
# stderr and exits 2; VALID (options in --opt=value and --opt value forms,
# "|"-separated) is accepted ahead of --help; BAD (a wrong value) exits 2.
#   cmake -DPROG=build/fashion_mnist -DNAME=fashion_mnist -DVALID="--epochs=3|--seed|1"
#         -DBAD="--epochs=0" -P cmake/cli_check.cmake
macro(run_case want_rc want_out want_err)
  execute_process(COMMAND "${PROG}" ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                  ERROR_VARIABLE err TIMEOUT 60)
  set(what "${NAME} ${ARGN}")
  if(NOT rc STREQUAL "${want_rc}")
    message(FATAL_ERROR "${what}: exit status ${rc} (expected ${want_rc})\nstdout: ${out}\nstderr: ${err}")
  endif()
  foreach(stream out err)
    if(want_${stream} STREQUAL "usage" AND NOT ${stream} MATCHES "usage: ${NAME}")
      message(FATAL_ERROR "${what}: no usage on std${stream}\nstdout: ${out}\nstderr: ${err}")
    elseif(want_${stream} STREQUAL "empty" AND NOT ${stream} STREQUAL "")
      message(FATAL_ERROR "${what}: std${stream} should be empty\nstdout: ${out}\nstderr: ${err}")
    elseif(want_${stream} STREQUAL "some" AND ${stream} STREQUAL "")
      message(FATAL_ERROR "${what}: nothing on std${stream}\nstdout: ${out}")
    endif()
  endforeach()
endmacro()

run_case(0 usage empty --help)
run_case(2 empty usage --no-such-option)
if(VALID)
  string(REPLACE "|" ";" valid "${VALID}")
  run_case(0 usage empty ${valid} --help)
endif()
if(BAD)
  string(REPLACE "|" ";" bad "${BAD}")
  run_case(2 empty some ${bad})
endif()
