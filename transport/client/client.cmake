# libkvstash: the client library, a shared object with a SONAME, a symbol
# version map (only kvs_* API symbols are exported) and a pkg-config file.
include(GNUInstallDirs)
add_library(kvstash SHARED ${CMAKE_CURRENT_SOURCE_DIR}/client/conn.c
    ${CMAKE_CURRENT_SOURCE_DIR}/client/request.c
    ${CMAKE_CURRENT_SOURCE_DIR}/client/ops.c
    ${CMAKE_CURRENT_SOURCE_DIR}/client/stream.c
    ${CMAKE_CURRENT_SOURCE_DIR}/client/stream_fetch.c
    ${CMAKE_CURRENT_SOURCE_DIR}/client/locate.c
    ${CMAKE_CURRENT_SOURCE_DIR}/client/shm.c
    ${PROJECT_SOURCE_DIR}/common/status.c)
# kvs_strerror() is part of the client API: export it from this copy.
set_source_files_properties(${PROJECT_SOURCE_DIR}/common/status.c
    TARGET_DIRECTORY kvstash PROPERTIES COMPILE_OPTIONS -fvisibility=default)
target_link_libraries(kvstash PRIVATE kvs_wire kvs_ucx kvs_common kvs_cluster
    PkgConfig::UCX)
set_target_properties(kvstash PROPERTIES
    VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR}
    C_VISIBILITY_PRESET hidden
    LINK_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/client/libkvstash.map)
target_link_options(kvstash PRIVATE
    -Wl,--version-script=${CMAKE_CURRENT_SOURCE_DIR}/client/libkvstash.map
    -Wl,--no-undefined)
configure_file(${CMAKE_CURRENT_SOURCE_DIR}/client/libkvstash.pc.in
    ${CMAKE_BINARY_DIR}/libkvstash.pc @ONLY)
install(TARGETS kvstash EXPORT kvstashTargets
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${PROJECT_SOURCE_DIR}/include/kvstash/kvstash.h
    ${PROJECT_SOURCE_DIR}/include/kvstash/client.h
    ${PROJECT_SOURCE_DIR}/include/kvstash/stream.h
    ${PROJECT_SOURCE_DIR}/include/kvstash/locate.h
    ${PROJECT_SOURCE_DIR}/include/kvstash/shm.h
    ${PROJECT_SOURCE_DIR}/include/kvstash/wire_shm.h
    ${PROJECT_SOURCE_DIR}/include/kvstash/status.h
    ${PROJECT_SOURCE_DIR}/include/kvstash/types.h
    ${PROJECT_SOURCE_DIR}/include/kvstash/wire.h
    DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/kvstash)
install(FILES ${CMAKE_BINARY_DIR}/libkvstash.pc
    DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
