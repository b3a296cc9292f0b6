# SPDX-License-Identifier: Apache-2.0
"""`pip install ./python` works offline, fetching nothing (Debian's
setuptools, --no-build-isolation, --no-deps, --no-index), and the installed
package finds the library through KVSTASH_LIB or says what to do."""
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

PY = sys.executable


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    # A copy, so that the build's own files stay out of the source tree.
    shutil.copytree(ROOT / "python", src,
                    ignore=shutil.ignore_patterns("build", "*.egg-info",
                                                  "__pycache__"))
    target = tmp / "site"
    r = subprocess.run([PY, "-m", "pip", "install", "--no-build-isolation",
                        "--no-deps", "--no-index", "--disable-pip-version-check",
                        "--target", str(target), str(src)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return target


def _run(target, code, env_extra):
    env = {k: v for k, v in os.environ.items() if k != "KVSTASH_LIB"}
    env.update(env_extra, PYTHONPATH=str(target))
    return subprocess.run([PY, "-c", code], capture_output=True, text=True,
                          env=env, cwd=str(target.parent))


def test_installed_package_imports_and_loads_the_library(installed):
    lib = os.environ.get("KVSTASH_LIB") or str(
        ROOT / "build" / "transport" / "libkvstash.so")
    r = _run(installed, "import kvstash, sys; print(kvstash.__file__); "
             "print(kvstash.version()); print(kvstash.strerror(-5001))",
             {"KVSTASH_LIB": lib})
    assert r.returncode == 0, r.stderr
    where, version, text = r.stdout.split("\n")[:3]
    assert where.startswith(str(installed))
    assert version.count(".") == 2 and text == "not found"


def test_without_the_library_the_error_says_what_to_do(installed):
    r = _run(installed, "import kvstash; kvstash.version()",
             {"LD_LIBRARY_PATH": ""})
    if r.returncode == 0:
        pytest.skip("a libkvstash is installed system-wide")
    assert "KVSTASH_LIB" in r.stderr
