# kvstashd: the daemon (tools/kvstashd/), built as build/tools/kvstashd.
add_executable(kvstashd ${CMAKE_CURRENT_SOURCE_DIR}/kvstashd/main.c
    ${CMAKE_CURRENT_SOURCE_DIR}/kvstashd/config.c)
target_link_libraries(kvstashd PRIVATE kvs_transport kvstore kvs_common
    PkgConfig::INIH)
