# The wire codec: pure encode/decode, shared by the daemon, the client
# library, the unit tests and the fuzz target.
add_library(kvs_wire STATIC ${CMAKE_CURRENT_SOURCE_DIR}/proto/wire.c
    ${CMAKE_CURRENT_SOURCE_DIR}/proto/wire_hdr.c
    ${CMAKE_CURRENT_SOURCE_DIR}/proto/wire_shm.c)
set_target_properties(kvs_wire PROPERTIES POSITION_INDEPENDENT_CODE ON)
target_link_libraries(kvs_wire PUBLIC kvs_common)
# UCX setup (context, worker, endpoints, listeners, AM handler, memory
# registration, status mapping), shared by the daemon and libkvstash.
add_library(kvs_ucx STATIC ${CMAKE_CURRENT_SOURCE_DIR}/proto/ucx.c)
set_target_properties(kvs_ucx PROPERTIES POSITION_INDEPENDENT_CODE ON)
target_link_libraries(kvs_ucx PUBLIC kvs_common PkgConfig::UCX)
