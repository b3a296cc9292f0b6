# The daemon side: listener, connections and opcode handlers over UCX.
add_library(kvs_transport STATIC ${CMAKE_CURRENT_SOURCE_DIR}/server/server.c
    ${CMAKE_CURRENT_SOURCE_DIR}/server/conn.c
    ${CMAKE_CURRENT_SOURCE_DIR}/server/send.c
    ${CMAKE_CURRENT_SOURCE_DIR}/server/stage.c
    ${CMAKE_CURRENT_SOURCE_DIR}/server/handler.c
    ${CMAKE_CURRENT_SOURCE_DIR}/server/stat.c
    ${CMAKE_CURRENT_SOURCE_DIR}/server/stream.c
    ${CMAKE_CURRENT_SOURCE_DIR}/server/peer.c
    ${CMAKE_CURRENT_SOURCE_DIR}/server/source.c
    ${CMAKE_CURRENT_SOURCE_DIR}/server/sput.c
    ${CMAKE_CURRENT_SOURCE_DIR}/server/fetch.c
    ${CMAKE_CURRENT_SOURCE_DIR}/server/events.c
    ${CMAKE_CURRENT_SOURCE_DIR}/server/cluster.c
    ${CMAKE_CURRENT_SOURCE_DIR}/server/metrics.c
    ${CMAKE_CURRENT_SOURCE_DIR}/server/diskq.c
    ${CMAKE_CURRENT_SOURCE_DIR}/server/diskop.c
    ${CMAKE_CURRENT_SOURCE_DIR}/server/shm.c
    ${CMAKE_CURRENT_SOURCE_DIR}/server/shm_ops.c)
target_link_libraries(kvs_transport PUBLIC kvstore kvs_wire kvs_ucx kvs_common
    kvs_cluster PkgConfig::UCX PkgConfig::MHD)
