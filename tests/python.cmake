# Python tests (tests/python, pytest) with Debian's interpreter: another
# python3 that does not see Debian's packages may come first on PATH. The
# package is used from the source tree (python/), with the library and the
# daemon of this build. Three entries so that ctest -j runs them side by
# side: the binding, the torch model (skipped, saying so, without torch)
# and the engine adapters' harnesses. pytest's exit code 5 (no tests collected) counts as skipped.
set(KVS_PYTHON /usr/bin/python3 CACHE FILEPATH "Python for the Python tests")
set(KVS_PY_DIR ${CMAKE_CURRENT_SOURCE_DIR}/python)
set(KVS_PY_ENV "KVS_TEST_DIR=${CMAKE_BINARY_DIR}/testdata"
    "KVSTASH_LIB=$<TARGET_FILE:kvstash>" "KVSTASHD=$<TARGET_FILE:kvstashd>"
    "PYTHONDONTWRITEBYTECODE=1")
if(KVS_ASAN)
    # The library is built with ASan: its runtime must be loaded first.
    # Python's own allocations live until exit, so leaks are not checked.
    execute_process(COMMAND ${CMAKE_C_COMPILER} -print-file-name=libasan.so
        OUTPUT_VARIABLE KVS_LIBASAN OUTPUT_STRIP_TRAILING_WHITESPACE)
    list(APPEND KVS_PY_ENV "LD_PRELOAD=${KVS_LIBASAN}"
        "ASAN_OPTIONS=detect_leaks=0" "KVS_ASAN=1")
endif()
foreach(part binding model hosts)
    add_test(NAME python_${part}
        COMMAND ${KVS_PYTHON} -m pytest -q -rsx -p no:cacheprovider
            -m ${part} ${KVS_PY_DIR}
        WORKING_DIRECTORY ${KVS_PY_DIR})
    set_tests_properties(python_${part} PROPERTIES TIMEOUT 900
        SKIP_RETURN_CODE 5 LABELS python ENVIRONMENT "${KVS_PY_ENV}")
endforeach()
