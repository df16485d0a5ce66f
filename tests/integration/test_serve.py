"""nmt-serve as its clients see it: a real server process on loopback, its HTTP API, batching, load, the page."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from conftest import N_PAIRS, TINY_MODELS, compose_train, read_pairs
from omegaconf import OmegaConf
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from nmt.decoding.search import SearchConfig
from nmt.decoding.translator import Translator
from nmt.errors import ConfigError
from nmt.models import build_model
from nmt.serving.server import ApiError, DecodingWorker, ServeOptions, TranslateRequest, create_app

LOAD_CLIENTS = 16
LOAD_SECONDS = 10.0  # how long the load test runs
BATCH_WAIT_MS = 20  # the test server's max_batch_wait_ms
CHROME_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1100,1500",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, alive: Callable[[], bool], describe: Callable[[], str], timeout: float = 120.0) -> None:
    """Poll ``url``/health until it answers 200; fail with ``describe()`` if ``alive()`` turns false."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            pytest.fail(f"the server stopped before it was up:\n{describe()}")
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"the server was not up after {timeout:.0f} s:\n{describe()}")


@pytest.fixture(scope="module")
def server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``nmt-serve`` (its Hydra entry point, as the console script runs it) on a free loopback port."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("serve") / "server.log"
    cmd = [
        sys.executable,
        "-m",
        "nmt.cli.serve",
        f"checkpoint={tiny_checkpoint}",
        "host=127.0.0.1",
        f"port={port}",
    ]
    cmd += ["threads=1", "device=cpu", f"max_batch_wait_ms={BATCH_WAIT_MS}", "access_log=false"]
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, lambda: proc.poll() is None, log_path.read_text)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    # uvicorn shuts down gracefully (the decoding thread stops), then re-raises SIGTERM
    assert code in (0, -signal.SIGTERM), log_path.read_text()
    assert "Application shutdown complete" in log_path.read_text()


@pytest.fixture(scope="module")
def translator(tiny_checkpoint: Path) -> Translator:
    return Translator.from_checkpoint(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def expected(translator: Translator) -> dict[str, str]:
    """Each memorised German sentence -> the translation Translator.translate gives it."""
    de, _ = read_pairs("train", N_PAIRS)
    return dict(zip(de, translator.translate(de)))


def post(url: str, body: object, client: httpx.Client | None = None) -> httpx.Response:
    return (client or httpx).post(f"{url}/translate", json=body, timeout=60)


def test_translations_equal_the_translators_in_order(server, translator, expected):
    de, en = read_pairs("train", 4)
    lines = [de[2], "", "   ", de[0], de[1], de[3]]
    r = post(server, {"text": lines})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["translations"] == translator.translate(lines)
    assert body["translations"] == [en[2], "", "", en[0], en[1], en[3]]
    cfg = translator.config
    info = {"name": cfg["name"], "arch": "transformer", "src_lang": "de", "tgt_lang": "en", "attention": True}
    assert body["model"] == info
    search = {"beam_size": 1, "length_penalty": 0.6, "max_len_a": 1.5, "max_len_b": 10}
    assert body["search"] == {**search, "stopping": "exact", "length_normalization": "wu"}
    assert "attention" not in body
    beam2 = post(server, {"text": lines, "beam_size": 2}).json()
    assert beam2["search"]["beam_size"] == 2
    assert beam2["translations"] == dataclasses.replace(translator, search=SearchConfig(beam_size=2)).translate(lines)
    health = httpx.get(f"{server}/health").json()
    assert health["status"] == "ok" and health["model"] == info
    assert health["limits"]["max_lines"] == 64 and health["limits"]["max_batch_wait_ms"] == BATCH_WAIT_MS


def test_attention_rows_are_output_tokens_and_columns_source_tokens(server, translator):
    de, _ = read_pairs("train", 2)
    body = post(server, {"text": [de[0], "", de[1]], "attention": True}).json()
    assert body["attention"][1] is None and body["translations"][1] == ""
    for line, translation, att in zip(de, body["translations"][::2], body["attention"][::2]):
        src_ids = translator.src_tok.encode([line])[0]
        out_ids = translator.tgt_tok.encode([translation])[0]
        assert att["source_tokens"] == translator.src_tok.pieces(src_ids) + ["</s>"]
        assert att["output_tokens"] == translator.tgt_tok.pieces(out_ids) + ["</s>"]
        weights = np.array(att["weights"])
        assert weights.shape == (len(att["output_tokens"]), len(att["source_tokens"]))
        assert (weights >= 0).all()
        np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-4)


BAD_REQUESTS = [
    (b'{"text": ["Ein Hund"', 400, "request body is not valid JSON: Expecting"),
    (b'{"text": ["Gr\xfc\xdfe"]}', 400, "request body is not valid UTF-8 (invalid start byte at byte 13)"),
    (b'["Ein Hund"]', 422, "request body must be a JSON object"),
    (b'{"txt": ["Ein Hund"]}', 422, "unknown field 'txt': the fields are text, beam_size, attention"),
    (b'{"text": "Ein Hund"}', 422, '"text" must be a list of strings, one sentence each'),
    (b'{"text": ["Ein Hund", 3]}', 422, '"text" must be a list of strings'),
    (b'{"text": ["Ein Hund"], "beam_size": 0}', 422, '"beam_size" must be a whole number from 1 to 16, not 0'),
    (b'{"text": ["Ein Hund"], "beam_size": 17}', 422, "not 17"),
    (b'{"text": ["Ein Hund"], "beam_size": "2"}', 422, "not '2'"),
    (b'{"text": ["Ein Hund"], "beam_size": 2.5}', 422, "not 2.5"),
    (b'{"text": ["Ein Hund"], "beam_size": true}', 422, "not True"),
    (b'{"text": ["Ein \\ud800 Hund"]}', 422, "text[0] is not valid Unicode: a lone surrogate at character 4"),
    (b'{"text": ["Ein Hund"], "attention": "yes"}', 422, "\"attention\" must be true or false, not 'yes'"),
    (json.dumps({"text": ["Hund"] * 65}).encode(), 413, '"text" has 65 lines; at most 64 per request (max_lines)'),
    (
        json.dumps({"text": ["Hund", "", "x" * 1001]}).encode(),
        413,
        "text[2] has 1001 characters; at most 1000 per line (max_chars)",
    ),
    (b'{"text": ["' + b"x" * (1 << 20) + b'"]}', 413, "request body over 1048576 bytes (max_body_bytes)"),
]


@pytest.mark.parametrize(("content", "status", "message"), BAD_REQUESTS, ids=[m[:30] for _, _, m in BAD_REQUESTS])
def test_bad_requests_get_a_clear_error_and_the_server_keeps_serving(server, expected, content, status, message):
    r = httpx.post(f"{server}/translate", content=content, headers={"Content-Type": "application/json"}, timeout=60)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert message in r.json()["error"]
    sentence = next(iter(expected))
    assert post(server, {"text": [sentence]}).json()["translations"] == [expected[sentence]]


def test_wrong_method_and_path_are_json_errors(server):
    assert httpx.get(f"{server}/translate").json() == {"error": "Method Not Allowed"}
    assert httpx.get(f"{server}/nothing").status_code == 404


def test_concurrent_requests_are_decoded_together(server, expected):
    sentences = list(expected)[:12]
    before = httpx.get(f"{server}/health").json()["stats"]
    start = threading.Barrier(len(sentences))
    got: dict[int, list[str]] = {}

    def client(i: int) -> None:
        with httpx.Client() as c:
            c.get(f"{server}/health")  # connect before the barrier: the posts leave together
            start.wait()
            got[i] = post(server, {"text": [sentences[i]]}, c).json()["translations"]

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(sentences))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [got[i] for i in range(len(sentences))] == [[expected[s]] for s in sentences]
    after = httpx.get(f"{server}/health").json()["stats"]
    assert after["requests"] - before["requests"] == len(sentences)
    calls = after["decode_calls"] - before["decode_calls"]
    assert calls < len(sentences) and after["largest_batch"] >= 2, (before, after)


def decode_queued(worker: DecodingWorker, requests: list[TranslateRequest]) -> list[list[dict] | BaseException]:
    """Queue every request, then start the decoder (so it finds them all waiting); each one's outcome."""

    async def decode_all() -> list[list[dict] | BaseException]:
        pending = [asyncio.ensure_future(worker.translate(r)) for r in requests]
        await asyncio.sleep(0)  # every request is queued
        worker.start()
        try:
            return await asyncio.gather(*pending, return_exceptions=True)
        finally:
            await asyncio.to_thread(worker.stop)

    return asyncio.run(decode_all())


def test_queued_requests_with_the_same_settings_share_one_decode_call(translator, expected):
    """Five requests queued before the decoder starts: the three greedy ones in one call, the two beam-2 in
    another; a max_tokens budget of 1 token decodes each alone. Every request gets its own lines back."""
    sentences = list(expected)
    requests = [TranslateRequest(sentences[2 * i : 2 * i + 2], 1 if i % 2 == 0 else 2, False) for i in range(5)]
    for max_tokens, calls, largest in ((4096, 2, 3), (1, 5, 1)):
        worker = DecodingWorker(dataclasses.replace(translator, max_tokens=max_tokens), ServeOptions())
        results = decode_queued(worker, requests)
        assert [[item["translation"] for item in items] for items in results] == [
            [expected[s] for s in r.lines] for r in requests
        ]
        assert dataclasses.asdict(worker.stats) == {
            "requests": 5,
            "lines": 10,
            "decode_calls": calls,
            "largest_batch": largest,
        }


def test_a_line_longer_than_the_model_encodes_is_refused(translator, expected, monkeypatch):
    monkeypatch.setattr(translator.model, "max_positions", 8)  # sources of at most 7 subwords
    short, long = "Ein Hund.", next(iter(expected))
    results = decode_queued(
        DecodingWorker(dataclasses.replace(translator), ServeOptions()),
        [TranslateRequest([short, long], 1, False), TranslateRequest([short], 1, False)],
    )
    error = results[0]
    n = len(translator.src_tok.encode([long])[0])
    assert isinstance(error, ApiError) and error.status == 413
    assert error.message == f"text[1] is {n} subwords; the model encodes at most 7"
    assert [item["translation"] for item in results[1]] == translator.translate([short])


def test_load_16_clients(server, expected, tmp_path):
    """16 clients post for LOAD_SECONDS, each its own sentences in a random order: no errors, every answer
    is the translation of its request; prints (and writes to serve_load.json) latency and throughput."""
    sentences = list(expected)
    per_client = len(sentences) // LOAD_CLIENTS
    latencies: list[float] = []
    errors: list[str] = []
    lines_done = [0] * LOAD_CLIENTS
    before = httpx.get(f"{server}/health").json()["stats"]
    stop_at = time.monotonic() + LOAD_SECONDS

    def client(k: int) -> None:
        rng = random.Random(k)
        own = sentences[k * per_client : (k + 1) * per_client]
        with httpx.Client(timeout=60) as c:
            while time.monotonic() < stop_at:
                lines = rng.sample(own, rng.randint(1, len(own)))
                t0 = time.perf_counter()
                try:
                    r = post(server, {"text": lines}, c)
                except httpx.HTTPError as e:
                    errors.append(f"client {k}: {type(e).__name__}: {e}")
                    continue
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200 or r.json()["translations"] != [expected[s] for s in lines]:
                    errors.append(f"client {k}: {r.status_code} {r.text[:200]}")
                lines_done[k] += len(lines)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(LOAD_CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    after = httpx.get(f"{server}/health").json()["stats"]
    assert not errors, errors[:5]
    assert all(lines_done), lines_done
    p50, p95 = np.percentile(latencies, [50, 95]) * 1000
    calls = after["decode_calls"] - before["decode_calls"]
    requests = after["requests"] - before["requests"]
    result = {
        "clients": LOAD_CLIENTS,
        "seconds": round(elapsed, 1),
        "requests": len(latencies),
        "sentences": sum(lines_done),
        "p50_ms": round(float(p50), 1),
        "p95_ms": round(float(p95), 1),
        "sentences_per_s": round(sum(lines_done) / elapsed, 1),
        "requests_per_decode_call": round(requests / calls, 2),
        "cpu_cores": os.cpu_count(),
    }
    out = tmp_path / "serve_load.json"
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nnmt-serve load test: {json.dumps(result)} (written to {out})")
    assert requests == len(latencies) and calls < requests  # under load the decoder batches requests


def test_model_without_attention_says_so(translator, expected):
    """An rnnencdec model (random weights: only the response's shape matters) served from a thread."""
    cfg = compose_train([*TINY_MODELS["rnnencdec"]])
    src, tgt = translator.src_tok, translator.tgt_tok
    model = build_model(cfg.model, len(src), len(tgt), shared_vocab=False).eval()
    train_config = {**translator.config, "name": "random_rnnencdec", "model": OmegaConf.to_container(cfg.model)}
    rnn = Translator(model, src, tgt, SearchConfig(beam_size=1, max_len_a=0, max_len_b=5), config=train_config)
    port = free_port()
    config = uvicorn.Config(create_app(rnn, ServeOptions()), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, thread.is_alive, lambda: "uvicorn.Server thread ended")
        lines = [next(iter(expected)), ""]
        body = post(url, {"text": lines, "attention": True}).json()
        assert body["translations"] == rnn.translate(lines)
        assert body["model"]["arch"] == "rnnencdec" and body["model"]["attention"] is False
        assert body["attention"] is None
        assert body["attention_unavailable"].startswith("rnnencdec has no attention to show")
        assert httpx.get(f"{url}/health").json()["model"]["attention"] is False
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_options_are_checked():
    with pytest.raises(ConfigError, match="max_lines=0: must be a positive whole number"):
        ServeOptions(max_lines=0)
    with pytest.raises(ConfigError, match="max_batch_wait_ms=-1"):
        ServeOptions(max_batch_wait_ms=-1)


def test_cli_reports_bad_options(tiny_checkpoint):
    out = subprocess.run(
        [sys.executable, "-m", "nmt.cli.serve", f"checkpoint={tiny_checkpoint}", "search.n_best=2"],
        capture_output=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert (
        out.stderr.decode()
        .strip()
        .endswith("nmt-serve: error: search.n_best=2: nmt-serve returns one translation per line (n_best=1)")
    )


@pytest.mark.skipif(
    not (shutil.which("chromium") and shutil.which("chromedriver")),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)
def test_page_translates_in_a_headless_browser(server, expected, tmp_path):
    """Type two memorised sentences, click Translate, wait for the English and the heatmaps; save a screenshot."""
    sentences = sorted(expected, key=len)[:2]
    attention = post(server, {"text": sentences, "attention": True}).json()["attention"]
    shape = [(len(a["output_tokens"]), len(a["source_tokens"])) for a in attention]
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in [*CHROME_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get(server + "/")
        WebDriverWait(driver, 30).until(lambda d: "transformer" in d.find_element(By.ID, "model").text)
        driver.find_element(By.ID, "text").send_keys("\n".join(sentences))
        driver.find_element(By.ID, "go").click()
        WebDriverWait(driver, 60).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".translation")) == 2)
        shown = [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".translation")]
        assert shown == [expected[s] for s in sentences]
        maps = driver.find_elements(By.CSS_SELECTOR, "table.heatmap")
        drawn = [
            (len(m.find_elements(By.CSS_SELECTOR, "th.row")), len(m.find_elements(By.CSS_SELECTOR, "th.col")))
            for m in maps
        ]
        assert drawn == shape
        assert [len(m.find_elements(By.CSS_SELECTOR, "td.cell")) for m in maps] == [r * c for r, c in shape]
        screenshot = tmp_path / "serve.png"
        assert driver.save_screenshot(str(screenshot))
        print(f"\nscreenshot: {screenshot}")
    finally:
        driver.quit()
