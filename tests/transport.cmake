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
    add_executable(fuzz_wire ${KVS_FUZZ_DIR}/fuzz_wire.c)
    target_compile_options(fuzz_wire PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_options(fuzz_wire PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_libraries(fuzz_wire PRIVATE kvs_wire)
endif()
