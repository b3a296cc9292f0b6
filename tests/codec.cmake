# The codec's fuzz target. Ordinary builds replay the saved corpus through
# it in ctest; -DKVS_FUZZ=ON (with CC=clang) also builds the libFuzzer
# binary, with codec.c compiled into it so that it is instrumented:
#   build-fuzz/tests/fuzz_codec tests/fuzz/corpus/codec -max_total_time=60
add_executable(fuzz_codec_replay ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_codec.c
    ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/replay.c)
target_link_libraries(fuzz_codec_replay PRIVATE kvstore)
add_test(NAME fuzz_codec_replay COMMAND fuzz_codec_replay
    ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/codec)
set_tests_properties(fuzz_codec_replay PROPERTIES TIMEOUT ${KVS_TEST_TIMEOUT}
    LABELS "unit;fuzz")

if(KVS_FUZZ)
    if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
        message(FATAL_ERROR "KVS_FUZZ needs clang (CC=clang)")
    endif()
    add_executable(fuzz_codec ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_codec.c
        ${PROJECT_SOURCE_DIR}/kvstore/codec.c)
    target_compile_options(fuzz_codec PRIVATE
        -fsanitize=fuzzer,address,undefined)
    target_link_options(fuzz_codec PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_libraries(fuzz_codec PRIVATE kvs_common PkgConfig::ZSTD)
endif()
