# kvstash: the command-line client (tools/kvstash-cli/), linked against the
# shared libkvstash like any other client. Built as build/tools/kvstash.
add_executable(kvstash-cli ${CMAKE_CURRENT_SOURCE_DIR}/kvstash-cli/main.c)
set_target_properties(kvstash-cli PROPERTIES OUTPUT_NAME kvstash)
target_link_libraries(kvstash-cli PRIVATE kvstash kvs_common)
