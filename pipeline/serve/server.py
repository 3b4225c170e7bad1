"""*Ray Serve*: ``defr serve`` from start to stop: Ray joined or started, Serve's HTTP proxy bound, the
deployment (:mod:`pipeline.serve.deployment`) run, then SIGTERM / Ctrl-C awaited and everything stopped.

Ray comes from :func:`pipeline.distributed.init_ray` (a cluster's address, or a local Ray on loopback
with token authentication). Serve's proxy listens on ``--host`` (127.0.0.1 by default); any other address
needs a bearer token, checked by the replicas. Replicas take one GPU each where the cluster has or can add
GPUs; on a cluster they scale with the load (``num_replicas="auto"``), on a local Ray a fixed number runs.

Stopping (SIGTERM, SIGINT) ends what was started here and nothing else: a local Ray with its Serve; on a
cluster the application (its replicas get a few seconds to finish their requests), and Serve itself where
it was started here and no other application runs on it. All of it within :data:`STOP_WITHIN_S`, else the
process exits anyway, saying so.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time

from pipeline.serve.config import ModelSettings, ServeOptions, is_loopback

log = logging.getLogger(__name__)
APP = "defr"
STOP_WITHIN_S = 25.0


class Stopped(Exception):
    """SIGTERM or SIGINT arrived (raised in the main thread by the signal handler)."""


def _stop_on_signal(signum, frame):
    raise Stopped(signal.Signals(signum).name)


def check_bind(host: str, token_sha256: str | None) -> None:
    """Refuses a non-loopback bind without a token.

    Raises:
        ValueError: what to do instead.
    """
    if not is_loopback(host) and not token_sha256:
        raise ValueError(f"--host {host} would let anyone who reaches this machine use the model: give a token "
                         "(DEFR_SERVE_TOKEN=<secret> or --token-file FILE; requests then send "
                         "`Authorization: Bearer <secret>`), or keep the default --host 127.0.0.1")


def serve_model(settings: ModelSettings, options: ServeOptions, say=None) -> int:
    """Runs the model behind Ray Serve until SIGTERM / SIGINT; returns the exit status (0: stopped cleanly).

    Args:
        settings: what each replica loads and answers (its ``device`` and ``threads`` are set here).
        options: where it listens and runs.
        say: where the few lines for the user go.

    Raises:
        ValueError: a non-loopback host without a token, ``--device cuda`` on a cluster without GPUs, or an
            existing Serve on the cluster that listens elsewhere.
        pipeline.distributed.RayConnectError: the cluster cannot be reached, or a local Ray does not start.
    """
    from pipeline.distributed import RayConnectError, init_ray, resolve_address

    say = say or (lambda line: print(line, flush=True))  # flushed: a log file or a pipe sees each line at once
    check_bind(options.host, settings.token_sha256)
    started_here = not resolve_address(options.ray_address or None)
    signal.signal(signal.SIGTERM, _stop_on_signal)
    signal.signal(signal.SIGINT, _stop_on_signal)
    ray, state = None, {"serve_started": False, "deployed": False}
    try:
        try:
            ray = init_ray(options.ray_address or None)
        except (RayConnectError, Stopped):
            raise
        except Exception as e:  # noqa: BLE001 - a local Ray that does not come up: one line, not Ray's traceback
            raise RayConnectError(f"a local Ray did not start ({type(e).__name__}: {e}); its logs are under "
                                  "/tmp/ray/session_latest/logs") from e
        from ray import serve

        if not log.isEnabledFor(logging.INFO):  # -v shows Serve's start-up lines; else its warnings only
            logging.getLogger("ray.serve").setLevel(logging.WARNING)
        signal.signal(signal.SIGTERM, _stop_on_signal)  # ray.init installs its own (sys.exit): ours again
        app = _application(settings, options, started_here, say)
        state["serve_started"] = _start_serve(options)
        started = time.perf_counter()
        state["deployed"] = True  # from here on, ours to delete (even if serve.run is interrupted)
        serve.run(app, name=APP, route_prefix="/", logging_config=_QUIET)
        host = f"[{options.host}]" if ":" in options.host else options.host
        say(f"defr serve: ready in {time.perf_counter() - started:.0f} s: http://{host}:{options.port}/ (the "
            "page), POST /v1/detect, GET /healthz")
        if settings.token_sha256:
            say("defr serve: /v1/detect requires the header `Authorization: Bearer <token>` (the token given "
                "in DEFR_SERVE_TOKEN or --token-file)")
        if not is_loopback(options.host):
            say(f"defr serve: listening on {options.host}, reachable from other machines: keep the token secret, "
                "and put TLS in front of it (a reverse proxy) on an untrusted network")
        for note in settings.notes:
            say(f"NOTE: {note}")
        say("defr serve: stop with Ctrl-C or SIGTERM")
        while True:
            time.sleep(3600)
    except Stopped as e:
        say(f"defr serve: {e}: stopping")
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not cut the clean-up short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if ray is not None:
            _stop(ray, started_here, state, say)


# Serve's own logs (controller, proxy, replicas) go to Ray's log files; the console keeps warnings only.
_QUIET = {"log_level": "WARNING", "enable_access_log": False}


def _application(settings: ModelSettings, options: ServeOptions, started_here: bool, say):
    """Decides replicas and resources from the cluster, and builds the application."""
    import dataclasses

    from pipeline.capacity import cluster_view
    from pipeline.inference.engine import pool_size
    from pipeline.serve.deployment import build_app

    view = cluster_view()
    fixed = None if options.replicas == "auto" else int(options.replicas)
    if fixed is None and started_here:
        fixed = 1  # one machine: a replica per process is all it holds; scaling is for clusters
    # pool_size: one replica per GPU the cluster has or its autoscaler can add (device auto or cuda).
    gpus, gpu, why = pool_size(view, options.device, fixed or 2, 1 << 20)
    ceiling = options.max_replicas or (gpus if gpu else 2)
    settings.device = "cuda" if gpu else "cpu"
    settings.threads = max(1, int(options.cpus_per_replica))
    what = f"{fixed} replica(s)" if fixed else f"1 to {ceiling} replicas by load (autoscaling)"
    say(f"defr serve: {what} on {'one GPU each' if gpu else f'{options.cpus_per_replica:g} CPU(s) each'} "
        f"({why}), up to {settings.max_batch_size} images per batch")
    return build_app(dataclasses.replace(settings), fixed, ceiling, options.cpus_per_replica, gpu)


def _start_serve(options: ServeOptions) -> bool:
    """Starts Serve with its proxy on ``host:port``; on a cluster whose Serve runs already, checks that it
    listens there (Serve ignores new HTTP options then). Returns whether Serve was started here."""
    from ray import serve

    running = bool(serve.status().proxies)  # an empty status: no Serve on this cluster yet
    serve.start(http_options={"host": options.host, "port": options.port}, logging_config=_QUIET)
    from ray.serve.context import _get_global_client  # the one way to read the HTTP options in force

    config = _get_global_client().http_config
    if (config.host, config.port) != (options.host, options.port):
        raise ValueError(f"Ray Serve already runs on this cluster and listens on {config.host}:{config.port}, "
                         f"not {options.host}:{options.port}: use --host {config.host} --port {config.port} "
                         "(with a token where that is not loopback), or a cluster of your own")
    return not running


def _stop(ray, started_here: bool, state: dict, say) -> None:
    """Stops what was started here, nothing else: a local Ray with its Serve; on a cluster, the application,
    and Serve where it was started here and no other application runs on it. Exits the process if that takes
    longer than :data:`STOP_WITHIN_S`."""
    from ray import serve

    def too_slow():
        print(f"defr serve: stopping took over {STOP_WITHIN_S:.0f} s: exiting now", file=sys.stderr, flush=True)
        os._exit(1)

    timer = threading.Timer(STOP_WITHIN_S, too_slow)
    timer.daemon = True
    timer.start()
    start = time.perf_counter()
    try:
        if started_here:
            serve.shutdown()
        elif state["deployed"]:
            serve.delete(APP)
            if state["serve_started"] and not set(serve.status().applications) - {APP}:
                serve.shutdown()
    except Exception as e:  # noqa: BLE001 - Ray may be gone already; stopping goes on
        log.warning("stopping Ray Serve: %s: %s", type(e).__name__, e)
    if started_here:
        ray.shutdown()
    timer.cancel()
    say(f"defr serve: stopped in {time.perf_counter() - start:.1f} s")
