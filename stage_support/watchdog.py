"""A stage's watchdog: a separate small process that ends the stage and everything it started when
`dvc repro` (the stage's parent) dies or the stage is signalled and does not stop by itself.

Why a process and not a thread: a stage's main thread can sit in C code that holds the GIL (Ray's
connect and drain calls do), and then no Python thread of the stage runs, not even a watchdog.

    python stage_support/watchdog.py STAGE_PID PARENT_PID SIGNAL_FD GRACE_S

The stage starts it (stage_support/console.py) with the read end of a pipe as SIGNAL_FD: the stage's C-level
signal handler writes to the other end (``signal.set_wakeup_fd``) even while its main thread is stuck.
PARENT_PID is `dvc repro`: the stage's parent, or its grandparent when DVC's ``sh -c`` stays between
them (dash does not replace itself with the command); then the watchdog sends the SIGTERM that
``PR_SET_PDEATHSIG`` cannot (the shell, the stage's parent, outlives dvc). The watchdog keeps a list of
the stage's descendants while they are its descendants (Ray's agents are re-parented to init once their
raylet dies), and when the parent dies, or a signal arrived and GRACE_S passed, it SIGKILLs the stage
and that list. When the stage ends by itself, the watchdog stops whatever
the stage left behind and exits. A stage that did not end through its console's exit path (it was
killed) gets the outputs of its last good run put back (:mod:`stage_support.last_good`), as a failing stage
does for itself, and the watchdog says so in the stage's log (its stderr). The stage waits for the
watchdog's :data:`READY` line on its stdout before it starts its work, so even a stage killed in its first
second was seen alive; a kill can land between any two lines of the loop, so every question about the
stage treats "no such process" as "it ended".
"""
from __future__ import annotations

import contextlib
import os
import select
import sys
import time
import traceback

POLL_S = 0.5
STOP_SIGNALS = {1, 2, 15}  # SIGHUP, SIGINT, SIGTERM: the wake-up fd carries every handled signal's number


def _processes(root):
    import psutil

    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return [root]


def _kill(known: dict) -> None:
    import psutil

    for (pid, created), proc in list(known.items()):
        try:
            if proc.create_time() == created:  # the same process, not a reused pid
                proc.kill()
        except psutil.Error:
            pass


# What the stage writes on the pipe when it ends through its console's exit path with its outputs in order
# (stage_support/console.py): a byte no signal number takes (signals are 1-64).
FINISHED = b"\0"
# What it writes when its main thread has taken a stop signal and runs its exit path (stops Ray, says why).
STOPPING = b"\xfe"
# A stop signal that lands in the instant before the main thread enters a blocking call (a sleep, a wait on a
# socket) has its Python handler queued but not run, and the call is not interrupted: the stage would sit
# there until the grace ends. So when STOPPING has not come this long after a stop signal, the watchdog sends
# one SIGTERM more: it interrupts the call and the queued handler runs. Not sooner: a second signal while
# the exit path runs would cut it short.
RESEND_S = 3.0


def keep_last_good() -> str:
    """Puts back the outputs of the stage's last good run that DVC removed before running it
    (:mod:`stage_support.last_good`): what a failed stage (console) and a killed one (this watchdog) both do.
    Returns the line to tell the user ("" when there is nothing to say); never raises, since the failure
    that got us here is what the user must see first."""
    try:
        from stage_support import last_good

        return last_good.summary(last_good.restore())
    except Exception as e:  # noqa: BLE001
        return f"could not put back the last good results ({type(e).__name__}: {e})"


def _ended(stage) -> bool:
    """The stage is dead or a zombie. Every question about a process that can be killed between two lines
    of this loop may raise: a kill that lands mid-turn must not end the watchdog instead."""
    import psutil

    try:
        return not stage.is_running() or stage.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def _gone(stage, parent_pid: int) -> bool:
    """``dvc repro`` (PARENT_PID) is no longer above the stage: dead, or the stage was re-parented."""
    import psutil

    try:
        return parent_pid not in {p.pid for p in stage.parents()}
    except psutil.Error:
        return True


def _terminate(stage) -> None:
    import psutil

    try:
        stage.terminate()
    except psutil.Error:
        pass


def _drain(fd: int) -> bytes:
    """Everything still unread in the stage's pipe (the pipe outlives its writer until this end is closed)."""
    if fd < 0:
        return b""
    os.set_blocking(fd, False)
    data = b""
    try:
        while chunk := os.read(fd, 4096):
            data += chunk
    except (BlockingIOError, OSError):
        pass
    return data


READY = b"watching"  # the watchdog's one line on stdout, once it holds the stage (console._await_watchdog)


def _ready() -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.buffer.write(READY + b"\n")
        sys.stdout.close()


def _log(line: str) -> None:
    """One line in the stage's log (the watchdog's stderr, console.die_with_parent): a killed stage says nothing
    itself, so this is where the user reads what happened to its outputs."""
    with contextlib.suppress(OSError, ValueError):
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} stage_support.watchdog {line}", file=sys.stderr, flush=True)


def _put_back(what: str) -> None:
    """The last good outputs back, and one line in the stage's log saying why and what."""
    _log(f"{what}: {keep_last_good() or 'nothing to put back'}")


def watch(stage_pid: int, parent_pid: int, signal_fd: int, grace_s: float, on_ready=lambda: None) -> None:
    """Watches the stage until it ends (see the module's doc); ``on_ready()`` once it holds the stage."""
    import psutil

    finished = False  # the stage said it ended through its console's exit path (outputs in order)
    stopping = False  # the stage said its main thread runs its exit path
    resent = False  # the one more SIGTERM of RESEND_S went out
    try:
        stage = psutil.Process(stage_pid)
    except psutil.Error:  # gone before this process got going (killed at once?): what did it say?
        on_ready()
        if FINISHED not in _drain(signal_fd):
            _put_back(f"the stage (pid {stage_pid}) was gone at once")
        return
    on_ready()
    known: dict = {}
    stop_at = None  # when the stop began: a stop signal arrived, or dvc went
    while True:
        if _ended(stage):
            _kill(known)  # what the stage left behind (a local Ray's agents)
            # Its last words may still be in the pipe: read them before deciding.
            if not finished and FINISHED not in _drain(signal_fd):  # killed (SIGKILL): DVC removed its outputs
                _put_back(f"the stage (pid {stage_pid}) ended without finishing")
            return
        for proc in _processes(stage):
            if proc.pid == os.getpid():  # the watchdog is the stage's child too
                continue
            try:
                known.setdefault((proc.pid, proc.create_time()), proc)
            except psutil.Error:
                pass
        if stop_at is None and _gone(stage, parent_pid):
            stop_at = time.monotonic()
            with contextlib.suppress(psutil.Error):  # killed since _ended: the next turn sees it
                if stage.ppid() != parent_pid:  # a shell stands between: no PR_SET_PDEATHSIG came, ask now
                    _terminate(stage)
        ready, _, _ = select.select([signal_fd], [], [], POLL_S) if signal_fd >= 0 else ([], [], time.sleep(POLL_S))
        if ready:
            received = os.read(signal_fd, 64)
            finished = finished or FINISHED in received
            stopping = stopping or STOPPING in received
            if not received:  # the stage closed its end: it is exiting
                signal_fd = -1
            elif stop_at is None and STOP_SIGNALS & set(received):
                stop_at = time.monotonic()
        if stop_at is None:
            continue
        if not (resent or stopping or finished) and time.monotonic() > stop_at + RESEND_S:
            resent = True
            _log(f"the stage (pid {stage_pid}) has not taken its stop signal after {RESEND_S:g} s: sending SIGTERM again")
            _terminate(stage)
        if time.monotonic() > stop_at + grace_s:
            _kill(known)
            _put_back(f"killed the stage (pid {stage_pid}) and {len(known) - 1} processes it started after the grace "
                      f"of {grace_s:g} s")
            return


if __name__ == "__main__":  # run as a script (console.die_with_parent): the project root makes stage_support importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        watch(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), on_ready=_ready)
    except BaseException:  # noqa: BLE001 - the stage's log, not a lost stderr, gets the reason
        _log("failed:\n" + traceback.format_exc())
        raise
