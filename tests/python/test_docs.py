# SPDX-License-Identifier: Apache-2.0
"""Every example of docs/python.md runs as written: each ```python block
that is followed by a ```text block is run with Debian's interpreter
against a real daemon (its port in KVSTASH_PORT) and must print exactly
that text."""
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT

DOC = ROOT / "docs" / "python.md"
EXAMPLES = re.findall(r"```python\n(.*?)```\s*```text\n(.*?)```",
                      DOC.read_text(), re.S)


def test_the_doc_has_examples():
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("code,expected", EXAMPLES,
                         ids=[f"example-{i}" for i in range(len(EXAMPLES))])
def test_example_runs_as_written(code, expected, daemon, tmp_path):
    script = tmp_path / "example.py"
    script.write_text(code)
    env = dict(os.environ, KVSTASH_PORT=str(daemon.port),
               PYTHONPATH=str(ROOT / "python"))
    r = subprocess.run([sys.executable, str(script)], capture_output=True,
                       text=True, env=env, cwd=str(tmp_path), timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout == expected
