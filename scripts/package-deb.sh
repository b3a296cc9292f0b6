#!/usr/bin/env bash
# Builds the Debian package of kvstash (CPack DEB, packaging/CMakeLists.txt)
# in its own build folder with prefix /usr and without the tests, then
# prints the .deb's path. Usage: scripts/package-deb.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build-deb}
cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr \
    -DKVS_BUILD_TESTS=OFF >/dev/null
cmake --build "$B" -j "$(nproc)" >/dev/null
(cd "$B" && cpack -G DEB >/dev/null)
ls -t "$B"/kvstash_*.deb | head -n 1
