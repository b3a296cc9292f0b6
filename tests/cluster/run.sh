#!/usr/bin/env bash
# Runs one cluster test file with pytest; 77 (skipped) when what it needs
# is not installed (scripts/deps.sh installs it).
set -u
py=$1; shift
command -v etcd >/dev/null || { echo "skip: etcd not installed"; exit 77; }
"$py" -c "import zmq, msgpack, pytest" 2>/dev/null ||
    { echo "skip: python3-zmq / python3-msgpack / pytest missing"; exit 77; }
cd "$(dirname "$0")" || exit 1
"$py" -m pytest -q -rsxP -p no:cacheprovider "$@"
rc=$?
[ $rc -eq 5 ] && exit 77
exit $rc
