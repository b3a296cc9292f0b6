# The daemon side: listener, connections and opcode handlers over UCX.
add_library(kvs_transport STATIC ${CMAKE_CURRENT_SOURCE_DIR}/server.c
    ${CMAKE_CURRENT_SOURCE_DIR}/handler.c
    ${CMAKE_CURRENT_SOURCE_DIR}/stream.c)
target_link_libraries(kvs_transport PUBLIC kvstore kvs_wire kvs_common
    PkgConfig::UCX)
