"""What ``defr serve`` runs, as plain data: the model and its scoring (:class:`ModelSettings`, shipped to every
replica) and where and how it serves (:class:`ServeOptions`, used by the process that starts it).

The bearer token itself is never in either: replicas get its SHA-256 only (what Ray stores as the
deployment's arguments is readable by whoever can read the cluster's state), and compare digests.
"""
from __future__ import annotations

import hashlib
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

TOKEN_ENV = "DEFR_SERVE_TOKEN"
MIN_TOKEN_CHARS = 16


@dataclass
class ModelSettings:
    """What each replica loads and how it answers (plain data: Ray ships it to the replicas).

    Attributes:
        checkpoint: the DEFR model folder or URI.
        pairs, scoring: :class:`pipeline.regions.pairs.PairParams` / :class:`pipeline.regions.scorer.ScoreParams`
            fields (``defr detect``'s defaults).
        boxes: ``score_floor`` and ``max_per_image`` for every image's boxes (given or detected).
        detector: :class:`pipeline.inference.detector_predictor.DetectorSpec` fields, for requests without
            boxes; None: such requests are refused (400).
        picture: :class:`pipeline.inference.pictures.PictureOptions` fields of the annotated PNG.
        notes: lines every answer carries (e.g. that the model is a DEMO ONLY model).
        max_upload_bytes, max_pixels: the request limits (413 above them; max_pixels per frame of a clip).
        max_clip_s: the longest clip taken (413 above; a clip of unknown duration is refused).
        clip_fps: frames per second sampled from a clip.
        max_batch_size, batch_wait_s: dynamic batching (``@serve.batch``): images scored in one forward.
        threads: torch threads per replica (its CPUs).
        device: ``cuda`` on GPU replicas, else ``cpu``.
        token_sha256: the hex SHA-256 of the bearer token; None: no token asked (loopback only).
    """

    checkpoint: str
    pairs: dict = field(default_factory=dict)
    scoring: dict = field(default_factory=dict)
    boxes: dict = field(default_factory=lambda: {"score_floor": 0.05, "max_per_image": 100})
    detector: dict | None = None
    picture: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    max_upload_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_clip_s: float = 30.0
    clip_fps: float = 2.0
    max_batch_size: int = 8
    batch_wait_s: float = 0.01
    threads: int = 1
    device: str = "cpu"
    token_sha256: str | None = None


@dataclass
class ServeOptions:
    """Where ``defr serve`` listens and runs.

    Attributes:
        host, port: where Ray Serve's HTTP proxy listens (127.0.0.1 unless told otherwise).
        ray_address: the Ray cluster to join ("" = ``RAY_ADDRESS``, else a local Ray started here).
        replicas: a fixed number of replicas, or ``auto``: autoscaling by load between 1 and
            ``max_replicas`` (the default on a cluster; a local Ray gets 1).
        max_replicas: the autoscaling ceiling (0: one per GPU of the cluster, or 2 without GPUs).
        device: ``auto`` (GPU replicas where the cluster has GPUs), ``cpu`` or ``cuda``.
        cpus_per_replica: CPUs (and torch threads) of each replica.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    ray_address: str = ""
    replicas: str = "auto"
    max_replicas: int = 0
    device: str = "auto"
    cpus_per_replica: float = 1.0


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is reachable from this machine only."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def read_token(token_file: str | None) -> str | None:
    """The bearer token from ``token_file`` or the ``DEFR_SERVE_TOKEN`` variable (None: neither given).

    Raises:
        ValueError: the file cannot be read, or the token is shorter than 16 characters (the message never
            holds the token).
    """
    if token_file:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as e:
            raise ValueError(f"--token-file {token_file}: cannot read it ({type(e).__name__})") from None
        where = f"--token-file {token_file}"
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
        where = TOKEN_ENV
    if not token:
        return None
    if len(token) < MIN_TOKEN_CHARS or any(c.isspace() for c in token):
        raise ValueError(f"{where}: the token must be at least {MIN_TOKEN_CHARS} characters without spaces "
                         "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
    return token


def token_digest(token: str) -> str:
    """The hex SHA-256 the replicas compare a request's token with."""
    return hashlib.sha256(token.encode()).hexdigest()
