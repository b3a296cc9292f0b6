#!/usr/bin/env bash
# Install the Debian 12 packages that kvstash builds, tests and benchmarks
# with. Idempotent: when everything is present it only runs dpkg-query.
set -eu
pkgs=(build-essential cmake pkg-config clang libclang-rt-14-dev cppcheck
      liburing-dev librocksdb-dev libzstd-dev libxxhash-dev libcmocka-dev
      libinih-dev libucx-dev ucx-utils libjson-c-dev libssl-dev
      fio redis-server redis-tools python3 python3-matplotlib iproute2
      iptables python3-pytest python3-numpy python3-torch python3-pip
      python3-setuptools python3-wheel libopenblas0-pthread
      libfuse3-dev fuse3
      libzmq3-dev libmsgpack-dev libcurl4-openssl-dev etcd-server etcd-client
      python3-zmq python3-msgpack
      libmicrohttpd-dev prometheus  # /metrics; promtool checks it
      systemd)  # systemd-analyze verifies the unit (tests/cli/install.sh)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
