# kvstash-codec-bench: codec ratio and speed as JSON lines (docs/codec.md).
add_executable(kvstash-codec-bench ${CMAKE_CURRENT_SOURCE_DIR}/kvstash-codec-bench.c)
target_link_libraries(kvstash-codec-bench PRIVATE kvstore m)
add_test(NAME kvstash_codec_bench_smoke
    COMMAND kvstash-codec-bench -s 4096 -e 2)
set_tests_properties(kvstash_codec_bench_smoke PROPERTIES TIMEOUT 60
    LABELS unit)
