"""*Ray Serve*: the deployment behind ``defr serve``: the inference engine's regional-scoring predictor
(:class:`pipeline.inference.pair_predictor.PairPredictor`, the code of ``defr detect``) behind a FastAPI
ingress, with dynamic batching.

One replica loads the model (and the detector, if any) once, through
:class:`pipeline.inference.engine.PoolWorker` as an actor of the engine's pool does, and answers:

- ``GET /healthz``: 200 and what is served, from a replica, hence once a model is loaded;
- ``POST /v1/detect``: multipart ``image`` (the file) and optional ``boxes`` (a JSON list of ``{category,
  box, score}``; without it the configured detector finds them): the scored pairs as JSON, or the annotated
  PNG with ``?picture=1`` (``?picture=embed``: both, the PNG as a data URL in the JSON). A short clip
  (mp4, mov, webm, mkv) goes through :func:`pipeline.video.clips.detect_clip` on the same worker: its
  sampled frames' pairs, linked across frames, and the annotated .mp4 (``picture=1`` / ``embed``);
- ``GET /``: the web page (``pipeline/serve/page/``: static HTML, JS and CSS shipped with the package).

The upload is checked and decoded in a thread of the replica (:mod:`pipeline.serve.uploads`: limits first),
then ``_score`` (``@serve.batch``) gathers the photos of concurrent requests into one call of the
predictor, run in a worker thread so the replica keeps answering health checks meanwhile. A clip holds the
replica's model for its whole run (other requests wait for it or go to another replica). With a token
(any non-loopback bind), ``/v1/detect`` wants ``Authorization: Bearer <token>``; the page and ``/healthz``
carry no data and stay open (a browser cannot send the header when it opens a page).
"""
# No `from __future__ import annotations` here: FastAPI reads the routes' annotations (Request) at run time.
import asyncio
import base64
import hashlib
import hmac
import itertools
import logging
import tempfile
import threading
import time
from dataclasses import asdict
from importlib import resources
from pathlib import Path, PurePosixPath

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from ray import serve

from pipeline.serve.config import ModelSettings
from pipeline.serve.uploads import (CLIP_SUFFIXES, UploadError, check_length, decode_image, parse_boxes,
                                    parse_clip_boxes)

log = logging.getLogger(__name__)
app = FastAPI(title="defr serve", docs_url=None, redoc_url=None, openapi_url=None)  # no CDN-loaded docs UI
# The page's files: name -> media type. Nothing else is served from the package.
ASSETS = {"index.html": "text/html; charset=utf-8", "page.js": "text/javascript; charset=utf-8",
          "page.css": "text/css; charset=utf-8"}
# The page loads nothing from elsewhere; pictures and videos come back as data: URLs, dropped files are blob:.
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; media-src 'self' "
                                           "data: blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
CLIP_TOP = 20  # (track, class) results in a clip's answer, best smoothed score first


# Helpers the class uses are defined above it: Serve pickles the class by value when it is decorated.
def _error(status: int, message: str, **headers) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


def _round(box) -> list[float]:
    return [round(float(v), 2) for v in np.asarray(box).reshape(-1)]


def _detections(frame: int, boxes: tuple):
    from pipeline.detection.boxes import ImageDetections

    return ImageDetections(frame, *boxes)


class _EveryFrame(dict):
    """The boxes of a clip given as one list: the same boxes for whichever frame is asked."""

    def __init__(self, boxes: tuple):
        super().__init__()
        self.boxes = boxes

    def __contains__(self, frame) -> bool:
        return True

    def __missing__(self, frame):
        return _detections(frame, self.boxes)


@serve.deployment(
    # Graceful stop: a replica being stopped gets 5 s to finish its requests (Serve's default is 20 s),
    # so that SIGTERM ends `defr serve` well within 30 s.
    graceful_shutdown_timeout_s=5, graceful_shutdown_wait_loop_s=0.5,
    # A replica that dies or hangs is replaced; a constructor that fails (bad model) is not retried 20 times.
    health_check_period_s=2, health_check_timeout_s=60, max_constructor_retry_count=2)
@serve.ingress(app)
class DEFRServer:
    """One replica: the model and the optional detector (loaded once), the page."""

    def __init__(self, settings: dict):
        from pipeline.inference.engine import PoolWorker
        from pipeline.inference.pair_predictor import PairPredictor

        self.settings = s = ModelSettings(**settings)
        kwargs = {"checkpoint": s.checkpoint, "pairs": s.pairs, "scoring": s.scoring, "boxes": s.boxes,
                  "detector": s.detector, "picture": s.picture}
        self.worker = PoolWorker(PairPredictor, kwargs, s.device, s.threads)
        self.predictor = self.worker.predictor
        self.lock = threading.Lock()  # one model call at a time: a batch of photos, or a clip
        self.ids = itertools.count()
        self._score.set_max_batch_size(s.max_batch_size)
        self._score.set_batch_wait_timeout_s(s.batch_wait_s)
        page = resources.files("pipeline.serve") / "page"
        self.assets = {name: (page / name).read_bytes() for name in ASSETS}
        self.info = {"status": "ok", "model": self.predictor.model.config.model_name,
                     "classes": len(self.predictor.classes), "device": s.device, "detector": bool(s.detector),
                     "token_required": bool(s.token_sha256), "max_upload_mb": round(s.max_upload_bytes / 2 ** 20, 1),
                     "max_pixels": s.max_pixels, "max_clip_s": s.max_clip_s, "clip_fps": s.clip_fps,
                     "max_batch_size": s.max_batch_size, "notes": s.notes}

    # --- HTTP ---------------------------------------------------------------------------------------------

    @app.get("/healthz")
    async def healthz(self) -> dict:
        return self.info

    @app.get("/")
    async def page(self) -> Response:
        return self._asset("index.html")

    @app.get("/static/{name}")
    async def static(self, name: str) -> Response:
        return self._asset(name) if name in ASSETS and name != "index.html" else _error(404, f"no file {name!r}")

    @app.post("/v1/detect")
    async def detect(self, request: Request) -> Response:
        picture = request.query_params.get("picture", "0")
        if picture not in ("0", "1", "embed"):
            return _error(400, f"picture={picture!r}: expected 1 (the PNG), embed (JSON with the PNG) or 0")
        if not self._authorized(request):
            return _error(401, "this server wants the header `Authorization: Bearer <token>` (the token "
                               "defr serve was started with)", **{"WWW-Authenticate": "Bearer"})
        try:
            name, data, boxes = await self._read(request)
            if PurePosixPath(name.lower()).suffix in CLIP_SUFFIXES:
                return await self._clip(name, data, boxes, picture)
            row = self._row(name, parse_boxes(boxes) if boxes else None, draw=picture != "0")
            image = await asyncio.to_thread(decode_image, data, name, self.settings.max_pixels)
        except UploadError as e:
            return _error(e.status, str(e))
        answer, png, problem = await self._score((image, row))
        if problem:
            return _error(500, f"image {name!r}: scoring failed: {problem}")
        if picture == "1":
            return Response(png, media_type="image/png")
        if picture == "embed":
            answer["picture"] = "data:image/png;base64," + base64.b64encode(png).decode()
        return JSONResponse(answer)

    def _asset(self, name: str) -> Response:
        return Response(self.assets[name], media_type=ASSETS[name], headers=PAGE_HEADERS)

    def _authorized(self, request: Request) -> bool:
        """Whether the request carries the token (always, where none is set): digests compared in
        constant time."""
        if not self.settings.token_sha256:
            return True
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        digest = hashlib.sha256(token.strip().encode()).hexdigest()
        return scheme.lower() == "bearer" and hmac.compare_digest(digest, self.settings.token_sha256)

    async def _read(self, request: Request) -> tuple[str, bytes, str | None]:
        """The form's file name, bytes and ``boxes`` text (None: not given), or an :class:`UploadError`."""
        check_length(request.headers.get("content-length"), self.settings.max_upload_bytes)
        async with request.form(max_files=1, max_fields=4) as form:
            upload, boxes = form.get("image"), form.get("boxes")
            if upload is None or isinstance(upload, str):
                raise UploadError(400, "the form has no file field `image` (multipart/form-data, e.g. "
                                       "curl -F image=@photo.jpg)")
            name, data = upload.filename or "upload", await upload.read()
        if boxes is not None and not isinstance(boxes, str):
            raise UploadError(400, "boxes: expected a text field (a JSON list), got a file")
        boxes = boxes if boxes and boxes.strip() else None
        if boxes is None and self.predictor.detector is None:
            raise UploadError(400, "no boxes given and this server runs no detector: send a `boxes` field (a "
                                   "JSON list of {category, box, score}) or start defr serve with --detector")
        return name, data, boxes

    def _row(self, name: str, boxes: tuple | None, draw: bool) -> dict:
        """A photo's row for the predictor: without ``boxes`` the detector finds them."""
        row = {"image_id": next(self.ids), "uri": f"upload:{name}", "name": name, "draw": draw, "boxes": None}
        if boxes is not None:
            row.update(boxes=boxes[0].reshape(-1).tolist(), labels=boxes[1].tolist(), scores=boxes[2].tolist())
        return row

    # --- photos: batched ----------------------------------------------------------------------------------

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)  # set per server in __init__
    async def _score(self, jobs: list[tuple]) -> list[tuple]:
        """(answer, PNG, problem) of each (image, row): one predictor call for the whole batch, in a thread."""
        try:
            return await asyncio.get_running_loop().run_in_executor(None, self._run, jobs)
        except Exception as e:  # noqa: BLE001 - every request of the batch gets the reason, the replica lives on
            log.exception("scoring a batch of %d image(s) failed", len(jobs))
            return [(None, None, f"{type(e).__name__}: {e}")] * len(jobs)

    def _run(self, jobs: list[tuple]) -> list[tuple]:
        start = time.perf_counter()
        images, rows = [j[0] for j in jobs], [j[1] for j in jobs]
        with self.lock:
            table = self.worker.run_decoded(images, rows)
        seconds = round(time.perf_counter() - start, 4)
        return [(self._answer(r, row, image, seconds, len(jobs)), r["picture"], None)
                for r, row, image in zip(table.to_pylist(), rows, images)]

    def _answer(self, r: dict, row: dict, image, seconds: float, batch: int) -> dict:
        """The JSON answer of one photo: its boxes, its (pair, class) results best first (the fields of
        ``defr detect``'s hoi_detections.jsonl), why it has no pairs, what was dropped."""
        from pipeline.classes.coco import coco80_names
        from pipeline.inference.pair_predictor import why_no_pairs

        coco = [n.replace("_", " ") for n in coco80_names()]
        det = _detections(row["image_id"], (np.asarray(r["boxes"], np.float32).reshape(-1, 4),
                                            np.asarray(r["labels"], np.int64), np.asarray(r["scores"], np.float32)))
        hb, ob = np.asarray(r["human_box"]).reshape(-1, 4), np.asarray(r["object_box"]).reshape(-1, 4)
        return {"image": row["name"], "kind": "photo", "width": image.width, "height": image.height,
                "boxes_from": "request" if row["boxes"] is not None else "detector",
                "boxes": [{"category": coco[label], "box": _round(box), "score": round(float(score), 4)}
                          for box, label, score in zip(det.boxes, det.labels.tolist(), det.scores)],
                "pairs": r["pairs"], "hois": [self._hoi(h, o, hoi, score) for h, o, hoi, score
                                              in zip(hb, ob, r["hoi"], r["score"])],
                "note": why_no_pairs(det, r["pairs"], self.predictor.pair_params),
                "dropped_boxes": [{"box": item, "reason": reason}
                                  for item, reason in zip(r["box_reject_items"], r["box_rejects"])],
                "notes": self.settings.notes, "model": self.info["model"], "batch": batch, "seconds": seconds}

    def _hoi(self, human_box, object_box, hoi: int, score: float, **more) -> dict:
        c = self.predictor.classes[hoi]
        return {"human_box": _round(human_box), "object_box": _round(object_box), "hoi": int(hoi), "name": c.name,
                "verb": c.verb, "object": c.object, "score": float(score), **more}

    # --- short clips: one at a time per replica -----------------------------------------------------------

    async def _clip(self, name: str, data: bytes, boxes: str | None, picture: str) -> Response:
        given = parse_clip_boxes(boxes) if boxes else None
        answer, video = await asyncio.to_thread(self._run_clip, name, data, given, picture != "0")
        if picture == "1":
            return Response(video, media_type="video/mp4")
        if picture == "embed":
            answer["video"] = "data:video/mp4;base64," + base64.b64encode(video).decode()
        return JSONResponse(answer)

    def _run_clip(self, name: str, data: bytes, given, want_video: bool) -> tuple[dict, bytes | None]:
        """The clip through :func:`pipeline.video.clips.detect_clip` (from a private temporary file)."""
        from pipeline.video.clips import detect_clip
        from pipeline.video.frames import ClipReader, VideoError

        s = self.settings
        with tempfile.TemporaryDirectory(prefix="defr-serve-") as tmp:
            path = Path(tmp) / f"clip{PurePosixPath(name.lower()).suffix}"
            path.write_bytes(data)
            try:
                with ClipReader(str(path)) as reader:
                    info = reader.info
                if not info.duration_s or info.duration_s > s.max_clip_s:
                    raise UploadError(413, f"clip {name!r} lasts {info.duration_s or 'an unknown time'} s; the limit "
                                           f"is {s.max_clip_s:g} s (defr serve --max-clip-s)")
                if info.width * info.height > s.max_pixels:
                    raise UploadError(413, f"clip {name!r} is {info.width} x {info.height}, over the limit of "
                                           f"{s.max_pixels / 1e6:.1f} megapixels per frame (--max-pixels)")
                boxes = None if given is None else _EveryFrame(given) if isinstance(given, tuple) else {
                    frame: _detections(frame, b) for frame, b in given.items()}
                with self.lock:
                    result = detect_clip(str(path), self.worker, boxes=boxes, fps=s.clip_fps,
                                         video=Path(tmp) / "annotated.mp4" if want_video else None,
                                         picture=self.predictor.picture, name=name, progress=False)
            except VideoError as e:  # its message names the temporary file: name the upload instead
                raise UploadError(415, str(e).replace(str(path), f"clip {name!r}")) from None
            video = result.video.read_bytes() if result.video else None
        best: dict[tuple, dict] = {}
        for h in result.hois.sort_by([("smoothed", "descending")]).to_pylist():
            if (h["track"], h["hoi"]) not in best and len(best) < CLIP_TOP:
                best[(h["track"], h["hoi"])] = self._hoi(h["human_box"], h["object_box"], h["hoi"], h["smoothed"],
                                                         frame=h["frame"], time_s=h["time_s"], track=h["track"])
        return {"image": name, "kind": "clip", "width": result.info["width"], "height": result.info["height"],
                "boxes_from": "detector" if given is None else "request", "clip": result.info,
                "frames": result.frames, "hois": list(best.values()), "dropped_boxes": result.rejects[:100],
                "notes": s.notes, "model": self.info["model"], "seconds": result.info["seconds"]}, video


def build_app(settings: ModelSettings, replicas: int | None, max_replicas: int, cpus: float, gpu: bool):
    """The application to ``serve.run``: :class:`DEFRServer` with its replicas and resources.

    Args:
        settings: what each replica loads and how it answers.
        replicas: a fixed number of replicas; None: autoscaling by load between 1 and ``max_replicas``
            (Serve adds a replica while each holds more than a batch of requests, and removes idle ones).
        cpus: CPUs per replica.
        gpu: one GPU per replica.
    """
    scaling = ({"num_replicas": replicas} if replicas else
               {"num_replicas": "auto", "autoscaling_config": {
                   "min_replicas": 1, "max_replicas": max(1, max_replicas),
                   "target_ongoing_requests": settings.max_batch_size,
                   "upscale_delay_s": 10, "downscale_delay_s": 120}})
    return DEFRServer.options(
        # Enough requests in a replica to fill a batch while the previous one runs; more wait in the proxy
        # (up to max_queued_requests, then 503) or go to another replica.
        max_ongoing_requests=2 * settings.max_batch_size, max_queued_requests=256,
        ray_actor_options={"num_cpus": cpus, "num_gpus": 1 if gpu else 0}, **scaling,
    ).bind(asdict(settings))
