cmake_minimum_required(VERSION 3.16)
# fashion_mnist --save / --load: an epoch saved to a checkpoint, a second run
# resumed from it (it must say so and finish an epoch), and a damaged
# checkpoint refused with exit status 1 and the loader's message.
#   cmake -DPROG=build/fashion_mnist -DDIR=build/resume_check -P cmake/resume_check.cmake
file(REMOVE_RECURSE "${DIR}")
file(MAKE_DIRECTORY "${DIR}")
set(common --epochs 1 --limit 640 --threads 1 --seed 7)
execute_process(COMMAND "${PROG}" ${common} --save "${DIR}/fm.ckpt" RESULT_VARIABLE rc
                OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 300)
if(NOT rc EQUAL 0 OR NOT out MATCHES "test accuracy" OR NOT EXISTS "${DIR}/fm.ckpt")
  message(FATAL_ERROR "save run: exit ${rc}\nstdout: ${out}\nstderr: ${err}")
endif()
file(GLOB left "${DIR}/*.tmp*")
if(left)
  message(FATAL_ERROR "save run left temp files: ${left}")
endif()
execute_process(COMMAND "${PROG}" ${common} --load "${DIR}/fm.ckpt" --save "${DIR}/fm.ckpt"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 300)
if(NOT rc EQUAL 0 OR NOT err MATCHES "resumed from" OR NOT out MATCHES "test accuracy")
  message(FATAL_ERROR "resumed run: exit ${rc}\nstdout: ${out}\nstderr: ${err}")
endif()
file(WRITE "${DIR}/bad.ckpt" "not a checkpoint")
execute_process(COMMAND "${PROG}" ${common} --load "${DIR}/bad.ckpt" RESULT_VARIABLE rc
                OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 300)
if(NOT rc EQUAL 1 OR NOT err MATCHES "gf_load" OR out MATCHES "test accuracy")
  message(FATAL_ERROR "damaged checkpoint: exit ${rc}\nstdout: ${out}\nstderr: ${err}")
endif()
