"""`make test` relies on `--dist loadgroup` keeping each file marked with an xdist_group on one
worker (the Android, iOS and browser files: their module fixtures build an app, a bundle, a
browser). pytest 9.2 with pytest-xdist 3.8 silently dropped the grouping (tests/conftest.py says
why); this runs a small suite under the real tests/conftest.py on two workers and checks that a
group's module fixture is built once, on one worker."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

GROUPED = """
import os, pytest
pytestmark = pytest.mark.xdist_group("g")

@pytest.fixture(scope="module")
def built():
    with open(os.environ["LOG"], "a") as f:
        f.write(f"build {os.environ['PYTEST_XDIST_WORKER']}\\n")

@pytest.fixture(autouse=True)
def who(request):
    with open(os.environ["LOG"], "a") as f:
        f.write(f"run {os.environ['PYTEST_XDIST_WORKER']} {request.node.name}\\n")
""" + "".join(f"\n@pytest.mark.slow\ndef test_{i}(built):\n    pass\n" for i in range(4)) + "\ndef test_fast(built):\n    pass\n"

OTHER = "import time\n" + "".join(f"\ndef test_other_{i}():\n    time.sleep(0.2)\n" for i in range(8))


@pytest.mark.slow  # three fresh interpreters importing torch: ~20 s
def test_loadgroup_keeps_a_group_on_one_worker_with_one_module_fixture(tmp_path):
    suite = tmp_path / "suite"
    suite.mkdir()
    shutil.copy(ROOT / "tests/conftest.py", suite / "conftest.py")
    (suite / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow: slow\n")
    (suite / "test_grouped.py").write_text(GROUPED)
    (suite / "test_other.py").write_text(OTHER)
    log = tmp_path / "log"
    env = {**os.environ, "LOG": str(log), "PYTHONPATH": str(ROOT)}
    env.pop("PYTEST_XDIST_WORKER", None)
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", "--dist", "loadgroup"],
                         cwd=suite, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lines = log.read_text().splitlines()
    builds = [line for line in lines if line.startswith("build")]
    runs = [line.split() for line in lines if line.startswith("run")]
    assert len(runs) == 5
    assert len({worker for _, worker, _ in runs}) == 1, runs  # the whole group on one worker
    assert len(builds) == 1, builds  # its module fixture built once
    assert [name for *_, name in runs] == ["test_0", "test_1", "test_2", "test_3", "test_fast"]  # slow ones first, file order
