# Transport tests: the wire unit test, the fuzz corpus replay, and the
# end-to-end tests that start a real kvstashd.
target_link_libraries(test_wire PRIVATE kvs_wire)

# The frame decoder's fuzz target, replayed over its committed corpus in
# every ordinary run. With -DKVS_FUZZ=ON (clang) the real libFuzzer binary
# is built too: build/tests/fuzz_wire tests/fuzz/corpus/wire
set(KVS_FUZZ_DIR ${CMAKE_CURRENT_SOURCE_DIR}/fuzz)
add_executable(fuzz_wire_replay ${KVS_FUZZ_DIR}/fuzz_wire.c
    ${KVS_FUZZ_DIR}/replay.c)
target_link_libraries(fuzz_wire_replay PRIVATE kvs_wire)
add_test(NAME fuzz_wire_replay
    COMMAND fuzz_wire_replay ${KVS_FUZZ_DIR}/corpus/wire)
set_tests_properties(fuzz_wire_replay PROPERTIES TIMEOUT 120 LABELS fuzz)
if(KVS_FUZZ)
    # The codec is compiled into the target so libFuzzer sees its coverage.
    add_executable(fuzz_wire ${KVS_FUZZ_DIR}/fuzz_wire.c
        ${PROJECT_SOURCE_DIR}/transport/proto/wire.c)
    target_compile_options(fuzz_wire PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_options(fuzz_wire PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_libraries(fuzz_wire PRIVATE kvs_common)
endif()

# End-to-end tests: each starts a real kvstashd on 127.0.0.1 with an
# ephemeral port and a data directory under KVS_TEST_DIR.
add_library(kvs_e2e STATIC ${CMAKE_CURRENT_SOURCE_DIR}/e2e/e2e.c)
target_compile_definitions(kvs_e2e PUBLIC
    KVS_DAEMON_BIN="$<TARGET_FILE:kvstashd>")
target_link_libraries(kvs_e2e PUBLIC kvstash kvs_testutil)
add_dependencies(kvs_e2e kvstashd)
file(GLOB KVS_E2E_TESTS CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/e2e/e2e_*.c)
foreach(src ${KVS_E2E_TESTS})
    get_filename_component(name ${src} NAME_WE)
    add_executable(${name} ${src})
    target_link_libraries(${name} PRIVATE kvs_e2e kvs_wire PkgConfig::UCX)
    add_test(NAME ${name} COMMAND ${name})
    set_tests_properties(${name} PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77
        LABELS e2e ENVIRONMENT "KVS_TEST_DIR=${CMAKE_BINARY_DIR}/testdata")
endforeach()
