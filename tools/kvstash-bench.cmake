# kvstash-bench: load generator and replays; every figure is printed beside
# the machine's limit measured in the same run.
file(GLOB KVS_BENCH_SRC CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/bench/*.c)
add_executable(kvstash-bench ${KVS_BENCH_SRC})
pkg_check_modules(JSONC REQUIRED IMPORTED_TARGET json-c)
target_link_libraries(kvstash-bench PRIVATE kvstore PkgConfig::JSONC m)
if(TARGET kvstash)
    target_link_libraries(kvstash-bench PRIVATE kvstash)
endif()
