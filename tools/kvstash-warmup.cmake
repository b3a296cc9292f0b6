# kvstash-warmup: offline import of KV blocks from safetensors files, promotion
# of groups from NVMe to DRAM, export (tools/kvstash-warmup/, docs/warmup.md).
# A client of the daemon: linked against libkvstash, json-c and libcrypto.
pkg_check_modules(WARMUP_JSONC REQUIRED IMPORTED_TARGET json-c)
pkg_check_modules(WARMUP_CRYPTO REQUIRED IMPORTED_TARGET libcrypto)
file(GLOB KVS_WARMUP_SRC CONFIGURE_DEPENDS
    ${CMAKE_CURRENT_SOURCE_DIR}/kvstash-warmup/*.c)
add_executable(kvstash-warmup ${KVS_WARMUP_SRC})
target_include_directories(kvstash-warmup PRIVATE ${PROJECT_SOURCE_DIR})
target_link_libraries(kvstash-warmup PRIVATE kvstash kvs_common PkgConfig::WARMUP_JSONC
    PkgConfig::WARMUP_CRYPTO)
