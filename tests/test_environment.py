"""training.environment: the code version a run records in its metrics.json."""
import json
import shutil
import subprocess

import pytest
import threadpoolctl

from engine import parallel
from training.environment import code_version, environment


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_code_version_is_the_commit_marked_when_tracked_files_changed(tmp_path):
    assert code_version(str(tmp_path)) is None                  # not a checkout
    git = lambda *a: subprocess.run(["git", "-C", str(tmp_path), *a], check=True,
                                    capture_output=True, text=True).stdout.strip()
    git("init", "-q")
    (tmp_path / "f.py").write_text("x = 1\n")
    git("add", "f.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    head = git("rev-parse", "HEAD")
    (tmp_path / "new.py").write_text("")                         # untracked: no mark
    assert code_version(str(tmp_path)) == head
    (tmp_path / "f.py").write_text("x = 2\n")
    assert code_version(str(tmp_path)) == head + "+changes"


def test_environment_on_the_cpu_names_no_gpu():
    env = environment("cpu")
    assert set(env) == {"code", "python", "numpy", "blas", "threads", "machine"}


def test_environment_records_the_blas_threadpoolctl_finds_and_the_threads():
    env = json.loads(json.dumps(environment("cpu")))           # as metrics.json keeps it
    found = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    assert [b["library"] for b in env["blas"]] == [i["internal_api"] for i in found]
    assert [b["version"] for b in env["blas"]] == [i["version"] for i in found]
    assert [b["threads"] for b in env["blas"]] == [i["num_threads"] for i in found]
    assert env["threads"] == parallel.num_threads()
    with parallel.threads(1):
        assert environment("cpu")["threads"] == 1
