"""The stage console: a few lines on the terminal, everything else in logs/<stage>.log; a failure's message
and the log's path; a stage that outlives its parent (a killed `dvc repro`) stops by itself."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def stage_script(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "fake_stage.py"
    script.write_text("import logging, os, sys, time\nfrom stage_support import console\n\n\ndef main():\n" +
                      textwrap.indent(textwrap.dedent(body).strip("\n"), "    ") +
                      '\n\n\nconsole.run(main, "fake")\n')
    return script


def run_stage(tmp_path: Path, body: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEFR_LOG_DIR": str(tmp_path / "logs"), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(stage_script(tmp_path, body))], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_terminal_gets_the_stage_lines_and_the_log_gets_everything(tmp_path):
    out = run_stage(tmp_path, """
        print("library chatter on stdout")
        os.write(2, b"C-level noise on fd 2\\n")
        logging.getLogger("ray.train").info("Failed to query Ray Train Controller actor state")
        logging.getLogger("stages.fake").info("wrote data/x.parquet (3 rows)")
        logging.getLogger("stages.fake").warning("2 of 400 images rejected")
    """)
    assert out.returncode == 0, out.stdout + out.stderr
    terminal = out.stdout.splitlines()
    assert terminal[0] == "fake: wrote data/x.parquet (3 rows)"
    assert terminal[1] == "fake: WARNING: 2 of 400 images rejected"
    assert terminal[2].startswith("fake: done in ") and len(terminal) == 3 and out.stderr == ""
    log = (tmp_path / "logs" / "fake.log").read_text()
    for line in ("library chatter on stdout", "C-level noise on fd 2", "Failed to query Ray Train Controller",
                 "wrote data/x.parquet"):
        assert line in log


def test_a_failure_prints_its_message_and_the_log_path_and_exits_1(tmp_path):
    out = run_stage(tmp_path, """
        raise ValueError("params.yaml: train.lr = 'fast': expected a number in (0, 1.0]")
    """)
    assert out.returncode == 1
    assert "fake: FAILED: ValueError: params.yaml: train.lr = 'fast'" in out.stdout
    assert f"full log: {tmp_path / 'logs' / 'fake.log'}" in out.stdout
    assert "Traceback" in (tmp_path / "logs" / "fake.log").read_text() and "Traceback" not in out.stdout


def running(pid: int) -> bool:
    """The process exists and is not a zombie (it exited; only its parent's wait is missing)."""
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def under_a_parent(tmp_path: Path, script: Path, shell: bool = False, **env) -> tuple[subprocess.Popen, int]:
    """Starts ``script`` as the child of a parent process (standing for `dvc repro`), or below a
    ``/bin/sh -c`` that stays in between (``shell``: the command has work after the stage, as dash keeps
    for any command); returns (parent, pid of the parent's child: the stage, or the shell)."""
    environ = {**os.environ, "DEFR_LOG_DIR": str(tmp_path / "logs"), "PYTHONPATH": str(ROOT), **env}
    argv = ["/bin/sh", "-c", f"{sys.executable} {script}; status=$?; exit $status"] if shell \
        else [sys.executable, str(script)]
    parent = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                               f"p = subprocess.Popen({argv!r}); print(p.pid, flush=True); "
                               "time.sleep(300)"], cwd=tmp_path, env=environ, stdout=subprocess.PIPE, text=True)
    return parent, int(parent.stdout.readline())


def wait_for(condition, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not condition():
        time.sleep(0.2)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_stage_whose_parent_is_killed_stops_by_itself(tmp_path):
    """The parent stands for `dvc repro`: SIGKILL to it must not leave the stage running alone."""
    script = stage_script(tmp_path, """
        logging.getLogger("stages.fake").info("working")
        time.sleep(300)
    """)
    parent, stage = under_a_parent(tmp_path, script)
    log = tmp_path / "logs" / "fake.log"
    wait_for(lambda: log.exists() and "working" in log.read_text(), 30)
    # the stage got to its work and still runs: a stage that died at start-up would pass the rest
    assert log.exists() and "working" in log.read_text() and running(stage), "the stage never got to work"
    parent.kill()
    parent.wait()
    wait_for(lambda: not running(stage), 20)
    assert not running(stage), "the orphaned stage still runs"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_stage_that_ignores_sigterm_is_ended_with_what_it_started(tmp_path):
    """A stage stuck in C code that holds the GIL (Ray's connect and drain calls do) runs no Python signal
    handler and no Python thread; here the stage blocks the signals instead, to the same effect. The
    watchdog process ends it and its children (a `sleep` it started) once the parent is gone."""
    script = stage_script(tmp_path, """
        import signal, subprocess
        child = subprocess.Popen(["sleep", "300"])
        logging.getLogger("stages.fake").info("child %d", child.pid)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
        time.sleep(300)
    """)
    parent, stage = under_a_parent(tmp_path, script, DEFR_STOP_GRACE_S="2")
    log = tmp_path / "logs" / "fake.log"
    wait_for(lambda: log.exists() and "child" in log.read_text(), 30)
    assert log.exists() and "child" in log.read_text(), "the stage never started its child"
    child = int(log.read_text().split("child ")[1].split()[0])
    assert running(stage) and running(child), "the stage or its child ended before the parent was killed"
    parent.kill()
    parent.wait()
    wait_for(lambda: not running(stage) and not running(child), 30)  # the grace (2 s here) and polling
    assert not running(stage), "the stuck stage still runs"
    assert not running(child), "the stage's child process still runs"


def test_sigterm_stops_a_stage_with_a_message(tmp_path):
    script = stage_script(tmp_path, """
        logging.getLogger("stages.fake").info("working")
        time.sleep(300)
    """)
    env = {**os.environ, "DEFR_LOG_DIR": str(tmp_path / "logs"), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "fake: working"
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=30)[0]
    assert proc.returncode != 0 and "stopped" in rest


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_stage_below_a_shell_that_stays_stops_when_its_dvc_is_killed(tmp_path):
    """DVC runs a command through `$SHELL -c` (/bin/sh when unset): bash replaces itself with the command,
    dash does not, so the shell, not dvc, is the stage's parent and outlives a killed dvc. The command
    here keeps any shell in place (it has work after the stage)."""
    script = stage_script(tmp_path, """
        logging.getLogger("stages.fake").info("working")
        time.sleep(300)
    """)
    dvc, shell = under_a_parent(tmp_path, script, shell=True)
    log = tmp_path / "logs" / "fake.log"
    wait_for(lambda: log.exists() and "working" in log.read_text(), 30)
    assert log.exists() and "working" in log.read_text(), "the stage never got to work"
    (stage,) = [int(p) for p in Path(f"/proc/{shell}/task/{shell}/children").read_text().split()]
    assert running(stage)
    dvc.kill()
    dvc.wait()
    wait_for(lambda: not running(stage), 30)
    assert not running(stage), "the stage below the shell still runs after its dvc was killed"
    wait_for(lambda: not running(shell), 10)
    assert not running(shell), "the shell still waits"
