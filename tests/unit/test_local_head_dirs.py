"""The shared local head's temporary folder (its token and log): private, named for its process, removed
when the head stops, and removed by the next head when its process was killed before it could."""
from __future__ import annotations

import subprocess
import sys
import tempfile

from pipeline.distributed import HEAD_DIR_PREFIX, LocalHead


def test_head_folders_are_removed_by_stop_and_those_of_dead_processes_by_the_next_head(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = tmp_path / f"{HEAD_DIR_PREFIX}{dead.stdout.strip()}-abc"       # a killed demo's head
        running = tmp_path / f"{HEAD_DIR_PREFIX}{alive.pid}-def"               # another live run's head
        given = tmp_path / "given"
        for folder in (stale, running):
            folder.mkdir()
            (folder / "auth_token").write_text("t")
        head = LocalHead()
        assert head.work_dir.parent == tmp_path and head.work_dir.stat().st_mode & 0o077 == 0
        assert not stale.exists() and running.exists()
        head.stop()
        assert not head.work_dir.exists() and running.exists()
        given.mkdir()
        LocalHead(given).stop()   # a folder the caller gave is the caller's: left alone
        assert given.exists()
    finally:
        alive.kill()
        alive.wait()
