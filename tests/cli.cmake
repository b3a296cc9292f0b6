# Operator-facing behaviour (issue 20), driven through the real binaries by
# the shell scripts in tests/cli/: configuration files and --print-config,
# the daemon's start-up checks, the CLI's arguments and messages, the
# install tree. Each tests/cli/<name>.sh is the CTest test cli_<name>.
file(GLOB KVS_CLI_TESTS CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/cli/*.sh)
list(FILTER KVS_CLI_TESTS EXCLUDE REGEX "/lib\\.sh$")
foreach(script ${KVS_CLI_TESTS})
    get_filename_component(name ${script} NAME_WE)
    add_test(NAME cli_${name} COMMAND bash ${script})
    set_tests_properties(cli_${name} PROPERTIES TIMEOUT 120 LABELS e2e
        SKIP_RETURN_CODE 77
        ENVIRONMENT "KVS_TEST_DIR=${CMAKE_BINARY_DIR}/testdata;KVSTASHD=$<TARGET_FILE:kvstashd>;KVSTASH=$<TARGET_FILE:kvstash-cli>;KVSTASH_WARMUP=$<TARGET_FILE:kvstash-warmup>;KVSTASH_BENCH=$<TARGET_FILE:kvstash-bench>;KVS_SOURCE_DIR=${PROJECT_SOURCE_DIR};KVS_BINARY_DIR=${CMAKE_BINARY_DIR}")
endforeach()
