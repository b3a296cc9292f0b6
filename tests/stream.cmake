# Streaming between sidecars (issue 5): the network-partition test, a shell
# script that makes its own network namespaces and runs two kvstashd and
# two clients (tests/e2e/stream_netns_client.c) inside them. Skips (77)
# without the privileges for ip netns. The other streaming tests are
# e2e_stream*.c, registered with the e2e tests.
add_executable(stream_netns_client
    ${CMAKE_CURRENT_SOURCE_DIR}/e2e/stream_netns_client.c)
target_link_libraries(stream_netns_client PRIVATE kvs_e2e)
add_test(NAME e2e_stream_partition
    COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/e2e/stream_partition.sh
        $<TARGET_FILE:kvstashd> $<TARGET_FILE:stream_netns_client>
        ${CMAKE_BINARY_DIR}/testdata)
set_tests_properties(e2e_stream_partition PROPERTIES TIMEOUT 60
    SKIP_RETURN_CODE 77 LABELS e2e)
