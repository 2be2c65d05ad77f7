# Fails when any of BINARIES (a ;-list of executables) loads libtorch or c10: the study, store, scheduler, report and
# dataset targets they link must stay libtorch-free (rank 0, plan, status and report need no libtorch).
foreach(binary IN LISTS BINARIES)
  execute_process(COMMAND ldd ${binary} OUTPUT_VARIABLE libraries RESULT_VARIABLE status)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "ldd ${binary} failed (${status})")
  endif()
  string(REGEX MATCHALL "lib(torch|c10)[^ \t\n]*" torch_libraries "${libraries}")
  if(torch_libraries)
    message(FATAL_ERROR "${binary} links libtorch: ${torch_libraries}")
  endif()
  get_filename_component(name ${binary} NAME)
  message(STATUS "${name}: no libtorch among its libraries")
endforeach()
