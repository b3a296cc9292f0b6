# The fault-injecting file system and the tests that run on it: see
# tests/faultfs/CMakeLists.txt and docs/testing.md.
add_subdirectory(${CMAKE_CURRENT_SOURCE_DIR}/faultfs)
