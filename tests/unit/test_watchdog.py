"""stage_support/watchdog.py on its own, with real processes: after a stop signal it waits the grace and then
kills the stage and what the stage started; it never kills a process that merely reuses a remembered pid;
when the stage ends by itself it stops what the stage left behind. (tests/unit/test_console.py covers the
watchdog as the stage console starts it, below a killed parent.)"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from stage_support import watchdog

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc through psutil")

# A stand-in stage: starts a child (`sleep 300`), prints its pid, ignores SIGTERM like a stage stuck in C
# code, and then sleeps (or exits after EXIT_AFTER seconds, leaving the child behind).
STAGE = """
import os, signal, subprocess, sys, time
child = subprocess.Popen(["sleep", "300"])
print(child.pid, flush=True)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
time.sleep(float(sys.argv[1]))
"""


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


@pytest.fixture
def stage_and_watchdog(request):
    """Starts the stand-in stage (living ``request.param`` seconds) and a watchdog on it with a pipe as its
    signal fd; yields (stage, child pid, watchdog, write end of the pipe); ends whatever is left."""
    lives, grace, script = (*request.param, STAGE)[:3]
    stage = subprocess.Popen([sys.executable, "-c", script, str(lives)], stdout=subprocess.PIPE, text=True)
    child = int(stage.stdout.readline())
    read_fd, write_fd = os.pipe()
    dog = subprocess.Popen([sys.executable, str(ROOT / "stage_support" / "watchdog.py"), str(stage.pid), str(os.getpid()),
                            str(read_fd), str(grace)], pass_fds=[read_fd])
    os.close(read_fd)
    yield stage, child, dog, write_fd
    os.close(write_fd)
    for proc in (dog, stage):
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if running(child):
        os.kill(child, signal.SIGKILL)


@pytest.mark.parametrize("stage_and_watchdog", [(300, 3.0)], indirect=True)
def test_after_a_stop_signal_the_grace_passes_then_the_stage_and_its_child_are_killed(stage_and_watchdog):
    stage, child, dog, write_fd = stage_and_watchdog
    time.sleep(2 * watchdog.POLL_S)                # the watchdog has listed the stage's child by now
    stage.send_signal(signal.SIGTERM)              # ignored by the stage ...
    os.write(write_fd, bytes([signal.SIGTERM]))    # ... its C handler's byte on the wake-up fd
    sent = time.monotonic()
    time.sleep(1.5)
    assert running(stage.pid) and running(child), "killed before the grace (3 s) was over"
    assert until(lambda: stage.poll() is not None, 15), "the stage still runs long after the grace"
    waited = time.monotonic() - sent
    assert stage.returncode == -signal.SIGKILL and 3.0 <= waited < 15, (stage.returncode, waited)
    assert until(lambda: not running(child), 5), "the stage's child still runs"
    assert dog.wait(10) == 0


# A stand-in stage whose first SIGTERM is lost, as one that lands just before the main thread enters a
# blocking call (its handler queued, the call not interrupted): it stops (exit 0) at the second.
LOSES_THE_FIRST_SIGTERM = """
import signal, subprocess, sys, time
child = subprocess.Popen(["sleep", "300"])
print(child.pid, flush=True)
seen = []
signal.signal(signal.SIGTERM, lambda *_: seen.append(1) if not seen else sys.exit(0))
time.sleep(float(sys.argv[1]))
"""


@pytest.mark.parametrize("stage_and_watchdog", [(300, 60.0, LOSES_THE_FIRST_SIGTERM)], indirect=True)
def test_a_stop_signal_the_stage_has_not_taken_is_sent_again(stage_and_watchdog):
    stage, child, dog, write_fd = stage_and_watchdog
    stage.send_signal(signal.SIGTERM)              # lost
    os.write(write_fd, bytes([signal.SIGTERM]))
    sent = time.monotonic()
    assert until(lambda: stage.poll() is not None, 30), "the stage was never sent its stop signal again"
    waited = time.monotonic() - sent
    assert stage.returncode == 0 and watchdog.RESEND_S <= waited < 30, (stage.returncode, waited)
    assert dog.wait(10) == 0


def test_a_stop_signal_the_stage_has_not_taken_is_sent_again_when_its_dvc_is_gone(tmp_path):
    """dvc died above a shell that stays: the watchdog sends the SIGTERM itself (lost here), then once more."""
    dvc = subprocess.Popen(["true"])
    dvc.wait()                                     # a dead dvc: the stage is no longer below it
    stage = subprocess.Popen([sys.executable, "-c", LOSES_THE_FIRST_SIGTERM, "300"], stdout=subprocess.PIPE, text=True)
    child = int(stage.stdout.readline())
    read_fd, write_fd = os.pipe()
    dog = subprocess.Popen([sys.executable, str(ROOT / "stage_support" / "watchdog.py"), str(stage.pid), str(dvc.pid),
                            str(read_fd), "60"], pass_fds=[read_fd])
    os.close(read_fd)
    try:
        assert until(lambda: stage.poll() is not None, 30), "the stage was never sent its stop signal again"
        assert stage.returncode == 0, stage.returncode
        assert dog.wait(10) == 0
    finally:
        os.close(write_fd)
        for proc in (dog, stage):
            if proc.poll() is None:
                proc.kill()
        if running(child):
            os.kill(child, signal.SIGKILL)


@pytest.mark.parametrize("stage_and_watchdog", [(300, 60.0, LOSES_THE_FIRST_SIGTERM)], indirect=True)
def test_a_stage_that_runs_its_exit_path_gets_no_second_signal(stage_and_watchdog):
    stage, child, dog, write_fd = stage_and_watchdog
    stage.send_signal(signal.SIGTERM)
    os.write(write_fd, bytes([signal.SIGTERM]) + watchdog.STOPPING)  # the console's word: it took the signal
    time.sleep(watchdog.RESEND_S + 4 * watchdog.POLL_S)
    assert stage.poll() is None, "a second SIGTERM cut the stage's exit path short"


@pytest.mark.parametrize("stage_and_watchdog", [(300, 60.0)], indirect=True)
def test_a_byte_that_is_not_a_stop_signal_starts_no_countdown(stage_and_watchdog):
    stage, child, dog, write_fd = stage_and_watchdog
    os.write(write_fd, bytes([signal.SIGUSR1]))    # a handled signal that is no request to stop
    time.sleep(4 * watchdog.POLL_S)
    assert running(stage.pid) and running(child) and dog.poll() is None


@pytest.mark.parametrize("stage_and_watchdog", [(1.5, 60.0)], indirect=True)
def test_a_stage_that_ends_by_itself_has_what_it_left_behind_stopped(stage_and_watchdog):
    stage, child, dog, _ = stage_and_watchdog
    assert stage.wait(10) == 0                     # exits normally; its `sleep` child is orphaned
    assert until(lambda: not running(child), 5), "the orphaned child of a finished stage still runs"
    assert dog.wait(10) == 0


def test_a_reused_pid_is_not_killed():
    """The watchdog remembers (pid, start time): a process that later got the same pid has another start
    time and is left alone; the remembered process itself is killed."""
    proc = subprocess.Popen(["sleep", "300"])
    try:
        p = psutil.Process(proc.pid)
        watchdog._kill({(proc.pid, p.create_time() - 5.0): p})   # the pid of an older, ended process
        time.sleep(0.3)
        assert proc.poll() is None, "a process that reuses a remembered pid was killed"
        watchdog._kill({(proc.pid, p.create_time()): p})
        assert proc.wait(5) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_kill_that_lands_mid_turn_ends_the_watch_and_does_not_crash_it(monkeypatch, tmp_path):
    """The stage is killed (and reaped) between the watchdog's alive check and its questions about the stage's
    parent: every later question raises NoSuchProcess. The watchdog must still see the stage ended (and put
    the outputs back), not die of the exception. The kill is placed there by wrapping ``_processes``, the call
    between the two; the processes and psutil are real."""
    stage = subprocess.Popen(["sleep", "300"])
    held = psutil.Process(stage.pid)
    calls = []
    real = watchdog._processes

    def kill_mid_turn(root):
        if not calls:
            stage.kill()
            stage.wait()  # reaped: /proc/<pid> is gone
        calls.append(root.pid)
        return real(root)

    monkeypatch.setattr(watchdog, "_processes", kill_mid_turn)
    restored = []
    monkeypatch.setattr(watchdog, "keep_last_good", lambda: restored.append(True) or "")
    try:
        watchdog.watch(held.pid, os.getpid(), -1, 60.0)  # our pid as the parent: not above the stage, "gone"
    finally:
        if stage.poll() is None:
            stage.kill()
    assert calls == [stage.pid] and restored == [True]
