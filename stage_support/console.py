"""What a stage prints: a few lines a person reads; everything else goes to ``logs/<stage>.log``.

``python -m stages.<name>`` runs ``main`` under :func:`run`: the process's stdout and stderr (Python and C
level, so Ray, open_clip, Hugging Face and MMDetection output too) are redirected into the stage's log file,
and the stage speaks to the terminal through :func:`say` and progress bars. A failure prints its message
(the key, file or address at fault) and where the full log is, and exits with status 1. Tests that call a
stage's ``main()`` directly get ordinary logging and exceptions.
"""
from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import re
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Callable, TextIO

from pipeline.storage.credentials import MaskFilter, mask

LOG_DIR_ENV = "DEFR_LOG_DIR"  # default: logs/ under the working directory (the project root)
_console: TextIO | None = None
_stage = ""


def say(message: str) -> None:
    """One line for the person at the terminal (and the log).

    In a console run, every INFO record of a ``stages.*`` logger reaches the terminal the same way, so a
    stage's own ``log.info("wrote ...")`` lines are its console output; library loggers write to the log.
    """
    logging.getLogger(f"stages.{_stage or 'console'}").info(message)


class _ConsoleHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if _console is None:
            return
        with contextlib.suppress(Exception):
            text = record.getMessage()
            if record.levelno >= logging.WARNING:
                text = f"{record.levelname}: {text}"
            _console.write(f"{_stage}: {text}\n")
            _console.flush()


@contextlib.contextmanager
def progress_from_log(pattern: str, total: int, desc: str, start_pattern: str | None = None):
    """A terminal progress bar fed by lines of this stage's log that match ``pattern`` (its first group is
    the count done): how the train stage shows the epochs that Ray Train workers report. The bar appears
    at the first line matching ``start_pattern`` (or ``pattern``), so a preflight failure prints no bar."""
    if _console is None:
        yield
        return
    from tqdm import tqdm

    state: dict = {}
    regex = re.compile(pattern)

    def update(m: re.Match) -> None:
        if "bar" not in state:
            state["bar"] = tqdm(total=total, desc=f"{_stage}: {desc}", file=_console, unit="epoch", leave=True)
        done = regex.search(m.string)
        if done:
            bar = state["bar"]
            bar.set_postfix_str(done.group(0).split(" ", 2)[-1][:60], refresh=False)
            bar.update(max(0, int(done.group(1)) - bar.n))

    either = f"(?:{start_pattern})|(?:{pattern})" if start_pattern else pattern
    try:
        with follow(log_path(_stage), either, update):
            yield
    finally:
        if "bar" in state:
            state["bar"].close()


def log_path(stage: str) -> Path:
    return Path(os.environ.get(LOG_DIR_ENV, "logs")) / f"{stage}.log"


@contextlib.contextmanager
def follow(path: Path, pattern: str, on_match: Callable[[re.Match], None], interval: float = 1.0):
    """Calls ``on_match`` for each new line of ``path`` matching ``pattern`` while the block runs (a thread
    that tails the stage's own log: Ray forwards worker output there, e.g. the train stage's epoch lines)."""
    stop = threading.Event()
    regex = re.compile(pattern)

    def tail() -> None:
        with open(path, errors="replace") as f:
            f.seek(0, os.SEEK_END)
            while not stop.is_set():
                line = f.readline()
                if not line:
                    stop.wait(interval)
                    continue
                m = regex.search(line)
                if m:
                    with contextlib.suppress(Exception):
                        on_match(m)

    thread = threading.Thread(target=tail, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


_watchdog = None  # the watchdog process's Popen, once die_with_parent started it


def kill_descendants() -> None:
    """SIGKILLs every process this one started that is still below it (a local Ray: GCS, raylet, its
    workers). Ray's agents outlive a killed raylet and are re-parented to init: the watchdog remembered
    them while they were ours and ends them once this process is gone, so it is spared here."""
    with contextlib.suppress(Exception):
        import psutil

        spared = _watchdog.pid if _watchdog is not None else None
        for child in psutil.Process().children(recursive=True):
            if child.pid != spared:
                with contextlib.suppress(psutil.Error):
                    child.kill()


SHELLS = {"sh", "dash", "bash", "zsh", "ksh", "mksh", "busybox", "fish"}


def _dvc_pid() -> int:
    """The process whose death ends this stage: our parent, or the one above the ``sh -c`` wrapper DVC
    runs commands in. bash replaces itself with a single command, dash (Debian's /bin/sh, used when
    $SHELL is unset) does not: it stays between dvc and the stage and outlives a killed dvc."""
    parent = os.getppid()
    with contextlib.suppress(Exception):
        import psutil

        proc = psutil.Process(parent)
        while proc.name() in SHELLS and "-c" in proc.cmdline()[1:] and proc.ppid() > 1:
            proc = psutil.Process(proc.ppid())
        parent = proc.pid
    return parent


def die_with_parent(grace: float | None = None) -> None:
    """Makes this stage end when ``dvc repro`` (its parent) is killed or when it gets SIGTERM/SIGINT.

    Linux delivers SIGTERM to us when the parent dies (``PR_SET_PDEATHSIG``), and the watchdog does when
    dvc dies above a shell that stays (dash's ``sh -c``); a signal handled in Python stops a responsive
    main thread at once (Ray shuts down, temp files are removed); one that lands just before the main thread
    enters a blocking call is taken when the watchdog sends SIGTERM again (``watchdog.RESEND_S``). A stuck
    one (C code holding the GIL) is
    ended by the watchdog process (:mod:`stage_support.watchdog`): it notices the parent's death, or reads the
    signal from the wake-up fd the C-level handler writes, waits ``grace`` seconds (``DEFR_STOP_GRACE_S``,
    default 15) and then SIGKILLs the stage and every process it started. The next ``dvc repro`` resumes
    training from the last checkpoint (same run name).
    """
    import signal
    import subprocess

    from stage_support import watchdog

    grace = float(grace if grace is not None else os.environ.get("DEFR_STOP_GRACE_S", 15))
    parent = _dvc_pid()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG

    def graceful(signum, frame):  # a responsive main thread stops at once
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, graceful)
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    global _watchdog, _wakeup_fd
    _wakeup_fd = write_fd
    try:  # its lines go to the stage's log (our stderr in a console run)
        log_fd = sys.stderr.fileno()
    except (OSError, ValueError):
        log_fd = subprocess.DEVNULL
    try:
        _watchdog = subprocess.Popen([sys.executable, watchdog.__file__, str(os.getpid()), str(parent), str(read_fd),
                          str(grace)], pass_fds=(read_fd,), start_new_session=True, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=log_fd)
    except OSError as e:  # without a watchdog the stage still stops when it can
        logging.getLogger(__name__).warning("no watchdog (%s): a killed stage will not get its last good outputs "
                                            "back", e)
    else:
        _await_watchdog(_watchdog)
    os.close(read_fd)


WATCHDOG_START_S = 60.0  # a loaded machine's Python start; the stage goes on without it after this


def _await_watchdog(proc) -> None:
    """Waits until the watchdog holds this stage (it writes :data:`watchdog.READY` on its stdout), so a stage
    killed right after it starts is still one the watchdog saw alive; says so in the log when it does not."""
    import select

    from stage_support import watchdog

    ready, _, _ = select.select([proc.stdout], [], [], WATCHDOG_START_S)
    line = proc.stdout.readline() if ready else b""
    proc.stdout.close()
    if line.strip() != watchdog.READY:
        logging.getLogger(__name__).warning("the watchdog did not start within %.0f s (exit %s): a killed stage "
                                            "may not get its last good outputs back", WATCHDOG_START_S, proc.poll())


_wakeup_fd = -1  # the write end of the pipe the watchdog reads (signal numbers, and watchdog.FINISHED)


def _end(code: int) -> None:
    """How a stage ends through :func:`run`: a failed one (``code`` != 0) puts back the outputs of its last
    good run (the watchdog's :func:`~stage_support.watchdog.keep_last_good`, the one way for both), then the
    watchdog hears that the stage ended by itself with its outputs in order; a stage that dies without
    this (SIGKILL, the watchdog's own kill) gets its last good outputs put back by the watchdog."""
    from stage_support import watchdog

    if code:
        line = watchdog.keep_last_good()
        if line:
            say(line)
    _tell_watchdog(watchdog.FINISHED)


def _tell_watchdog(word: bytes) -> None:
    """One of the watchdog's words (``watchdog.STOPPING``, ``watchdog.FINISHED``) on the pipe it reads."""
    with contextlib.suppress(OSError):
        if _wakeup_fd >= 0:
            os.write(_wakeup_fd, word)


def _shutdown_ray(timeout: float = 20.0) -> None:
    """Stops the Ray this process started or joined, without letting a dead cluster hang the exit."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return
    thread = threading.Thread(target=ray.shutdown, daemon=True)
    thread.start()
    thread.join(timeout)


def _quiet_libraries() -> None:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_MININTERVAL", "2")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    logging.captureWarnings(True)


def run(main: Callable[[], object], stage: str) -> None:
    """Runs ``main`` with the console set up; exits 0 on success, 1 with a short message on failure."""
    global _console, _stage
    if any(a in ("-h", "--help") for a in sys.argv[1:]):
        main()  # argparse prints the help on the terminal and exits; the stage's log is left as it was
        return
    path = log_path(stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    logfile = open(path, "w", buffering=1)
    _console = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    _stage = stage
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(logfile.fileno(), 1)
    os.dup2(logfile.fileno(), 2)
    sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", buffering=0), write_through=True)
    sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb", buffering=0), write_through=True)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, force=True,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    console = _ConsoleHandler(logging.INFO)
    logging.getLogger("stages").addHandler(console)
    for handler in (*logging.getLogger().handlers, console):  # no URI credentials on screen or in the log
        handler.addFilter(MaskFilter())
    _quiet_libraries()
    import tqdm as _tqdm  # our bars draw on the terminal; Hugging Face's are off (above)
    _tqdm.tqdm.__init__ = functools.partialmethod(_tqdm.tqdm.__init__, file=_console)
    die_with_parent()
    from stage_support import watchdog

    start = time.perf_counter()
    code = 0
    try:
        main()
        say(f"done in {time.perf_counter() - start:.0f} s (log: {path})")
    except (KeyboardInterrupt, SystemExit) as e:
        _tell_watchdog(watchdog.STOPPING)  # first: it sends SIGTERM again to a stage that has not taken it
        code = e.code if isinstance(e, SystemExit) and isinstance(e.code, int) else 130
        if code:
            say(f"stopped ({type(e).__name__}); log: {path}")
    except BaseException as e:  # noqa: BLE001 - every failure ends with a readable line and the log's path
        _tell_watchdog(watchdog.STOPPING)
        sys.stderr.write(mask(traceback.format_exc()))
        message = str(e).strip() or type(e).__name__
        say(f"FAILED: {type(e).__name__}: {message}")
        say(f"full log: {path}")
        code = 1
    finally:
        _shutdown_ray()
        kill_descendants()  # whatever ray.shutdown left (it gives up on a dead cluster)
        _end(code)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)  # no interpreter teardown: Ray's atexit hooks can hang on a dead cluster
