# kvstashd: the daemon (tools/kvstashd/), built as build/tools/kvstashd.
add_executable(kvstashd ${CMAKE_CURRENT_SOURCE_DIR}/kvstashd/main.c
    ${CMAKE_CURRENT_SOURCE_DIR}/kvstashd/config.c)
# libinih first: libucs exports its own bundled copy of ini_parse*, which
# would otherwise win (and --as-needed then drops libinih altogether).
target_link_libraries(kvstashd PRIVATE PkgConfig::INIH kvs_transport kvstore
    kvs_common)
