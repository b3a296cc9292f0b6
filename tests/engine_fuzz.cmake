# Fuzz targets for the engine's disk decoders: index records
# (kvs_index_rec_decode) and block headers (kvs_segment_block_decode).
#
# Always: replay_fuzz_<name> runs the committed corpus in fuzz/corpus/<name>
# through the target in ordinary ctest runs (label "fuzz").
# With -DKVS_FUZZ=ON (clang, with KVS_ASAN/KVS_UBSAN): fuzz_<name> are
# libFuzzer binaries and the engine is built with coverage instrumentation.
# See docs/testing.md for how to run them for longer.
set(KVS_ENGINE_FUZZERS fuzz_index_record fuzz_segment_header)

if(KVS_FUZZ)
    if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
        message(FATAL_ERROR "KVS_FUZZ needs clang (-DCMAKE_C_COMPILER=clang)")
    endif()
    if(NOT KVS_ASAN)
        message(FATAL_ERROR "KVS_FUZZ needs KVS_ASAN=ON: the instrumented "
                "engine's coverage callbacks come from the sanitizer runtime")
    endif()
    target_compile_options(kvstore PRIVATE -fsanitize=fuzzer-no-link)
endif()

add_executable(fuzz_engine_corpus ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus_engine.c)
target_link_libraries(fuzz_engine_corpus PRIVATE kvstore)

foreach(name ${KVS_ENGINE_FUZZERS})
    add_executable(replay_${name} ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/${name}.c
                   ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/replay_engine.c)
    target_link_libraries(replay_${name} PRIVATE kvstore)
    add_test(NAME replay_${name}
             COMMAND replay_${name} ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/${name})
    set_tests_properties(replay_${name} PROPERTIES TIMEOUT 60 LABELS fuzz)
    if(KVS_FUZZ)
        add_executable(${name} ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/${name}.c)
        target_compile_options(${name} PRIVATE -fsanitize=fuzzer)
        target_link_options(${name} PRIVATE -fsanitize=fuzzer)
        target_link_libraries(${name} PRIVATE kvstore)
    endif()
endforeach()
