"""`defr serve` for real: Ray Serve on a local Ray (no mock), its HTTP API on loopback with concurrent clients,
and its web page in Debian's headless chromium.

One server for the whole module (``server``: started once as `defr serve` in a subprocess, with a token,
stopped by the last test with SIGTERM). The model is a tiny random ViT (DEMO ONLY: its scores mean nothing),
so what is tested is what holds whatever the scores: which pairs exist, that the answers are `defr detect`'s
for the same photo, what is refused and how, what survives a killed replica, how it stops.
"""
from __future__ import annotations

import io
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import requests
from PIL import Image

import pipeline.cli.commands as cli
from pipeline.classes.space import ClassSpace
from pipeline.model import ModelConfig, build_model, save_checkpoint
from tests.conftest import missing, require_module

# One process runs them all under xdist (`make test`): one server, and the SIGTERM test last.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("serve")]
ROOT = Path(__file__).resolve().parents[2]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
# The screenshot of the page with its results (`make test` leaves it there; docs/images/serve_page.png is one).
SCREENSHOT = Path(os.environ.get("DEFR_SERVE_SCREENSHOT", ROOT / "logs" / "serve_page.png"))


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    log: Path
    token: str
    model: Path
    photos: Path

    def post(self, data: bytes, name: str = "person.jpg", boxes: list | str | None = None, query: str = "",
             token: str | None = "", timeout: float = 60) -> requests.Response:
        token = self.token if token == "" else token
        form = {"boxes": boxes if isinstance(boxes, str) else json.dumps(boxes)} if boxes is not None else {}
        return requests.post(f"{self.url}/v1/detect{query}", files={"image": (name, data)}, data=form, timeout=timeout,
                             headers={"Authorization": f"Bearer {token}"} if token else {})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, shared_photos):
    require_module("ray.serve", "pip install 'ray[serve]'")
    require_module("python_multipart", "pip install python-multipart")
    root = tmp_path_factory.mktemp("serve")
    model = build_model(ModelConfig(model_name="defr-tiny-vit", init="random", num_classes=600,
                                    classes=ClassSpace.hico().to_list(), metadata={"demo_only": True}), None, seed=1)
    save_checkpoint(model, root / "model")
    token, port, log = secrets.token_urlsafe(24), _free_port(), root / "serve.log"
    env = {**os.environ, "DEFR_SERVE_TOKEN": token, "RAY_USAGE_STATS_ENABLED": "0"}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "serve", "--model", str(root / "model"),
                                 "--port", str(port), "--max-upload-mb", "1"],
                                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail(f"defr serve did not answer /healthz (exit {proc.poll()}): {log.read_text()[-3000:]}")
    yield Server(url, proc, log, token, root / "model", shared_photos)
    if proc.poll() is None:  # a test failed before the SIGTERM test: end the server's whole process group
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _boxes(server: Server, name: str) -> list[dict]:
    return json.loads((server.photos / "boxes.json").read_text())[name]


def test_healthz_and_token(server):
    health = requests.get(f"{server.url}/healthz", timeout=10).json()
    assert health["status"] == "ok" and health["model"] == "defr-tiny-vit" and health["classes"] == 600
    assert health["token_required"] is True and "DEMO ONLY" in " ".join(health["notes"])
    photo = (server.photos / "person.jpg").read_bytes()
    for token in (None, "wrong-" + server.token):
        r = server.post(photo, boxes=_boxes(server, "person.jpg"), token=token)
        assert r.status_code == 401 and "Authorization: Bearer" in r.json()["error"]
    assert server.token not in server.log.read_text()  # never printed


def test_photo_with_boxes_is_defr_detect(server, tmp_path, capsys):
    """The answer for a photo with its boxes: its two pairs (the person with the dog, with the horse), and
    the very results `defr detect` writes for that photo (the same engine)."""
    boxes = _boxes(server, "person.jpg")
    r = server.post((server.photos / "person.jpg").read_bytes(), boxes=boxes)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["pairs"] == 2 and answer["boxes_from"] == "request" and len(answer["boxes"]) == 3
    person = [b["box"] for b in boxes if b["category"] == "person"][0]
    assert answer["hois"] and {h["object"] for h in answer["hois"]} <= {"dog", "horse"}
    assert all(h["human_box"] == person and 0 <= h["score"] <= 1 for h in answer["hois"])
    assert cli.main(["detect", str(server.photos / "person.jpg"), "--model", str(server.model), "--boxes",
                     str(server.photos / "boxes.json"), "--out", str(tmp_path / "out"), "--local"]) == 0
    capsys.readouterr()
    written = [json.loads(line) for line in (tmp_path / "out" / "hoi_detections.jsonl").read_text().splitlines()]
    assert [(h["name"], h["human_box"], h["object_box"]) for h in written] == \
           [(h["name"], h["human_box"], h["object_box"]) for h in answer["hois"]]
    assert [h["score"] for h in answer["hois"]] == pytest.approx([h["score"] for h in written], abs=1e-6)


def test_picture_is_the_annotated_png(server):
    r = server.post((server.photos / "person.jpg").read_bytes(), boxes=_boxes(server, "person.jpg"),
                    query="?picture=1")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    picture = Image.open(io.BytesIO(r.content))
    assert picture.format == "PNG" and picture.size == Image.open(server.photos / "person.jpg").size


def test_bad_uploads_get_4xx_with_a_reason(server):
    boxes = _boxes(server, "person.jpg")
    bomb = io.BytesIO()
    Image.new("1", (8000, 6000)).save(bomb, "PNG")  # 48 megapixels in a few kB
    cases = [(b"", "empty.jpg", boxes, 400, "empty (0 bytes)"),
             (b"name,score\nx,1\n", "table.jpg", boxes, 415, "not an image"),
             (os.urandom(3 * 2 ** 19), "big.jpg", boxes, 413, "over the limit of 1.0 MB"),
             (bomb.getvalue(), "bomb.png", boxes, 413, "megapixels, over the limit"),
             ((server.photos / "person.jpg").read_bytes(), "person.jpg", None, 400, "no boxes given"),
             ((server.photos / "person.jpg").read_bytes(), "person.jpg", [{"category": "unicorn", "box": [0, 0, 9, 9]}],
              400, "boxes[0]: category 'unicorn' is not a COCO class")]
    for data, name, given, status, words in cases:
        r = server.post(data, name=name, boxes=given)
        assert (r.status_code, words) == (status, words) and words in r.json()["error"], (name, r.text)


def test_16_concurrent_requests_are_batched(server):
    photo, boxes = (server.photos / "person.jpg").read_bytes(), _boxes(server, "person.jpg")
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda i: server.post(photo, name=f"p{i}.jpg", boxes=boxes), range(16)))
    assert [r.status_code for r in answers] == [200] * 16
    assert sorted(r.json()["image"] for r in answers) == sorted(f"p{i}.jpg" for i in range(16))
    assert all(r.json()["pairs"] == 2 for r in answers)
    assert max(r.json()["batch"] for r in answers) > 1  # @serve.batch put several requests in one call


def test_a_killed_replica_is_replaced(server):
    """SIGKILL the replica (a process of the server's own Ray): Serve starts another and the next request
    gets its answer."""
    replicas = [p for p in psutil.Process(server.proc.pid).children(recursive=True)
                if "ServeReplica:defr" in " ".join(p.cmdline())]
    assert len(replicas) == 1
    replicas[0].kill()
    r = server.post((server.photos / "person.jpg").read_bytes(), boxes=_boxes(server, "person.jpg"), timeout=120)
    assert r.status_code == 200 and r.json()["pairs"] == 2
    now = [p.pid for p in psutil.Process(server.proc.pid).children(recursive=True)
           if "ServeReplica:defr" in " ".join(p.cmdline())]
    assert len(now) == 1 and now[0] != replicas[0].pid


def _clip(path: Path, photo: Path, frames: int = 8) -> Path:
    from pipeline.video.mp4 import Mp4Writer

    image = Image.open(photo).convert("RGB")
    with Mp4Writer(path, 4) as writer:
        for _ in range(frames):
            writer.write(image)
    return path


def test_page_in_headless_chromium(server, tmp_path):
    """The page in a real browser: the token typed in, a photo, its boxes file and a short clip chosen; the
    annotated picture, its top interactions and the clip's annotated video appear."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        missing("Debian's chromium and chromium-driver are not installed (make install-browser)")
    require_module("selenium", "pip install selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}",
                 "--window-size=1360,1000"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        browser.get(server.url + "/")
        WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "token").is_displayed())
        browser.find_element(By.ID, "token").send_keys(server.token)
        # The clip has no entry in boxes.json: it takes the pasted list (the person photo's boxes, every frame).
        browser.find_element(By.ID, "boxes").send_keys(json.dumps(_boxes(server, "person.jpg")))
        clip = _clip(tmp_path / "walk.mp4", server.photos / "person.jpg")
        files = [server.photos / "person.jpg", server.photos / "dog.jpg", server.photos / "boxes.json", clip]
        browser.find_element(By.ID, "files").send_keys("\n".join(str(f) for f in files))
        cards = lambda b: {c.find_element(By.CLASS_NAME, "name").text: c for c in b.find_elements(By.CLASS_NAME, "card")}
        WebDriverWait(browser, 90).until(lambda b: len(cards(b)) == 3 and not any(
            c.find_element(By.CLASS_NAME, "status").text in ("", "scoring...") for c in cards(b).values()))
        shown = cards(browser)
        for name in ("person.jpg", "dog.jpg"):  # dog.jpg has no person: a picture, no interactions, and why
            assert "failed" not in shown[name].get_attribute("class"), shown[name].text
            assert shown[name].find_element(By.CLASS_NAME, "picture").get_attribute("src").startswith("data:image/png")
        assert "2 pair(s) from 3 given box(es)" in shown["person.jpg"].text
        top = [li.text for li in shown["person.jpg"].find_elements(By.CSS_SELECTOR, ".top li")]
        assert len(top) == 5 and all(t.split()[-2] in ("dog", "horse") for t in top)
        assert "no person" in shown["dog.jpg"].text
        video = shown["walk.mp4"].find_element(By.TAG_NAME, "video")
        assert video.get_attribute("src").startswith("data:video/mp4") and "4 frame(s) at 2 per s" in shown["walk.mp4"].text
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SCREENSHOT))
        assert Image.open(SCREENSHOT).size[0] > 0
    finally:
        browser.quit()


def test_non_loopback_without_token_refused(server, monkeypatch, capsys):
    monkeypatch.delenv("DEFR_SERVE_TOKEN", raising=False)
    started = time.monotonic()
    assert cli.main(["serve", "--model", str(server.model), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "--host 0.0.0.0" in err and "token" in err and time.monotonic() - started < 10  # before any Ray


def test_sigterm_stops_within_30_s(server):
    family = psutil.Process(server.proc.pid).children(recursive=True)
    assert family  # Ray's processes, started by the server
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=30) == 0
    assert time.monotonic() - started < 30
    gone, alive = psutil.wait_procs(family, timeout=10)
    assert not alive, [p.cmdline() for p in alive]
    assert "defr serve: SIGTERM: stopping" in server.log.read_text()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.url}/healthz", timeout=5)
