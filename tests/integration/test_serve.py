"""nmt-serve as its clients see it: a real server process on loopback, its HTTP API, batching, load, the page."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
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
from nmt.serving.server import ApiError, DecodingWorker, ServeOptions, TranslateRequest, create_app, model_digest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import serve_load  # noqa: E402

free_port = serve_load.free_port

LOAD_CLIENTS = 8
LOAD_SECONDS = 5.0  # how long the load test runs
BATCH_WAIT_MS = 20  # the test server's max_batch_wait_ms
REQUEST_TIMEOUT_S = 2  # the test server's request_timeout_s
SLOW_CLIENTS = 50
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


def wait_until_up(url: str, alive: Callable[[], bool], describe: Callable[[], str], timeout: float = 120.0) -> None:
    """Poll ``url``/health until it answers 200; fail with ``describe()`` if ``alive()`` turns false."""
    if serve_load.healthy_within(url, alive, timeout):
        return
    if not alive():
        pytest.fail(f"the server stopped before it was up:\n{describe()}")
    pytest.fail(f"the server was not up after {timeout:.0f} s:\n{describe()}")


@dataclasses.dataclass
class Served:
    url: str
    pid: int
    log: Path


@pytest.fixture(scope="module")
def served(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
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
    cmd += [f"request_timeout_s={REQUEST_TIMEOUT_S}"]
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, lambda: proc.poll() is None, log_path.read_text)
        yield Served(url, proc.pid, log_path)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    # uvicorn shuts down gracefully (the decoding thread stops), then re-raises SIGTERM
    assert code in (0, -signal.SIGTERM), log_path.read_text()
    assert "Application shutdown complete" in log_path.read_text()


@pytest.fixture(scope="module")
def server(served: Served) -> str:
    return served.url


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


def test_translations_equal_the_translators_in_order(server, translator, expected, tiny_checkpoint):
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
    assert health["status"] == "ok" and health["ready"] is True and health["model"] == info
    assert health["model_id"] == model_digest([tiny_checkpoint])
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


def test_load_8_clients(server, expected):
    """LOAD_CLIENTS clients post random requests for LOAD_SECONDS (scripts/serve_load.py's clients): no
    errors, every answer the translation of its request; prints latency and throughput."""
    before = httpx.get(f"{server}/health").json()["stats"]
    load = serve_load.run_load(
        server, LOAD_CLIENTS, LOAD_SECONDS, list(expected), 8, lambda lines, out: out == [expected[s] for s in lines]
    )
    after = httpx.get(f"{server}/health").json()["stats"]
    assert not load.errors, load.errors[:5]
    summary = load.summary()
    print(f"\nnmt-serve load test, {LOAD_CLIENTS} clients, {os.cpu_count()} cores: {json.dumps(summary)}")
    calls = after["decode_calls"] - before["decode_calls"]
    requests = after["requests"] - before["requests"]
    assert requests == summary["requests"] > LOAD_CLIENTS
    assert calls < requests  # under load the decoder batches requests


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """(status line and headers, body) of one response: Content-Length bytes, or up to the connection's end."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, body = data.split(b"\r\n\r\n", 1)
    length = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
    while length is None or len(body) < int(length.group(1)):
        chunk = sock.recv(4096)
        if not chunk:
            break
        body += chunk
    return head, body


def closed_by_server(sockets: list[socket.socket], within: float) -> int:
    """How many of ``sockets`` the server closes (end of stream, or a reset) within ``within`` seconds."""
    deadline = time.monotonic() + within
    open_ = list(sockets)
    while open_ and time.monotonic() < deadline:
        for sock in list(open_):
            sock.settimeout(0.05)
            try:
                if sock.recv(4096) == b"":
                    open_.remove(sock)
            except TimeoutError:
                pass
            except ConnectionError:
                open_.remove(sock)
    return len(sockets) - len(open_)


def process_counts(pid: int) -> tuple[int, int]:
    """(threads, open file descriptors) of a process."""
    return len(os.listdir(f"/proc/{pid}/task")), len(os.listdir(f"/proc/{pid}/fd"))


def settled_counts(pid: int, expected: tuple[int, int] | None = None, timeout_s: float = 10.0) -> tuple[int, int]:
    """process_counts once they have settled: equal to `expected` when given, else unchanged for half a
    second (or whatever they are at the deadline). A connection a client has just closed holds a thread
    and a descriptor for a moment, so one read alone may count it, in the baseline or after."""
    deadline = time.monotonic() + timeout_s
    counts, since = process_counts(pid), time.monotonic()
    while time.monotonic() < deadline:
        if counts == expected or (expected is None and time.monotonic() - since >= 0.5):
            break
        time.sleep(0.05)
        now = process_counts(pid)
        if now != counts:
            counts, since = now, time.monotonic()
    return counts


POST_HEAD = b"POST /translate HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"


def test_slow_and_idle_connections_are_closed_while_others_are_served(served, expected):
    """SLOW_CLIENTS connections, half silent and half sending headers a few bytes at a time, do not delay a
    normal client, and the server closes every one of them once REQUEST_TIMEOUT_S has passed."""
    baseline = settled_counts(served.pid)
    slow = [connect(served.url) for _ in range(SLOW_CLIENTS)]
    try:
        for sock in slow[::2]:
            sock.sendall(POST_HEAD[:20])
        sentence = next(iter(expected))
        t0 = time.monotonic()
        assert post(served.url, {"text": [sentence]}).json()["translations"] == [expected[sentence]]
        assert time.monotonic() - t0 < REQUEST_TIMEOUT_S
        for sock in slow[::2]:
            sock.sendall(POST_HEAD[20:30])  # still trickling: the deadline is not reset by bytes
        assert closed_by_server(slow, REQUEST_TIMEOUT_S + 10) == SLOW_CLIENTS
    finally:
        for sock in slow:
            sock.close()
    assert settled_counts(served.pid, expected=baseline) == baseline


def test_a_body_that_stops_coming_is_dropped_and_an_oversized_one_refused_at_once(served):
    """A body that stalls half way, and one declared over max_body_bytes that keeps coming after its 413:
    both connections are closed at REQUEST_TIMEOUT_S. Headers over h11's 16 KiB get a 400 at once."""
    with connect(served.url) as sock:
        sock.sendall(POST_HEAD + b"X-Filler: " + b"x" * 100_000)
        assert read_response(sock)[0].startswith(b"HTTP/1.1 400 ")
    stalled, oversized = connect(served.url), connect(served.url)
    try:
        stalled.sendall(POST_HEAD + b'Content-Length: 1000\r\n\r\n{"text": ["Ein')
        oversized.sendall(POST_HEAD + b"Content-Length: 100000000\r\n\r\n")
        head, body = read_response(oversized)
        assert head.startswith(b"HTTP/1.1 413 ") and b"max_body_bytes" in body
        oversized.sendall(b"x" * 100_000)
        assert closed_by_server([stalled, oversized], REQUEST_TIMEOUT_S + 10) == 2
    finally:
        stalled.close()
        oversized.close()


def test_clients_that_disconnect_mid_request_leave_no_trace(served, expected):
    """Clients that hang up half way through their body, or before reading their answer: the next client is
    served, the server's threads and open files are as before and its log shows no error."""
    baseline = settled_counts(served.pid)
    body = json.dumps({"text": list(expected)[:4]}).encode()
    for _ in range(10):
        with connect(served.url) as sock:
            sock.sendall(POST_HEAD + b"Content-Length: 1000\r\n\r\n" + body[:20])
        with connect(served.url) as sock:
            sock.sendall(POST_HEAD + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    sentence = next(iter(expected))
    assert post(served.url, {"text": [sentence]}).json()["translations"] == [expected[sentence]]
    assert settled_counts(served.pid, expected=baseline) == baseline
    log = served.log.read_text()
    assert "Traceback" not in log and "ERROR" not in log, log[-3000:]


def test_a_request_whose_client_left_is_not_decoded(translator, expected):
    """Three requests queued; the second's client goes before the decoder starts: two are decoded."""
    sentences = list(expected)
    requests = [TranslateRequest([s], 1, False) for s in sentences[:3]]
    worker = DecodingWorker(dataclasses.replace(translator), ServeOptions())

    async def decode_all() -> list:
        pending = [asyncio.ensure_future(worker.translate(r)) for r in requests]
        await asyncio.sleep(0)  # every request is queued
        pending[1].cancel()
        worker.start()
        try:
            return await asyncio.gather(*pending, return_exceptions=True)
        finally:
            await asyncio.to_thread(worker.stop)

    results = asyncio.run(decode_all())
    assert isinstance(results[1], asyncio.CancelledError)
    assert [results[0][0]["translation"], results[2][0]["translation"]] == [expected[s] for s in sentences[0:3:2]]
    assert worker.stats.requests == 2


class InThreadServer:
    """``create_app`` under uvicorn in a thread of the test process, on a free loopback port."""

    def __init__(self, translator: Translator, options: ServeOptions) -> None:
        config = uvicorn.Config(
            create_app(translator, options), host="127.0.0.1", port=free_port(), log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{config.port}"

    def __enter__(self) -> str:
        self.thread.start()
        wait_until_up(self.url, self.thread.is_alive, lambda: "uvicorn.Server thread ended")
        return self.url

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def test_health_says_busy_while_the_queue_is_full(translator, expected, monkeypatch):
    """max_queue=1, the decoder held inside a call: one request decoding and one waiting make /health 503
    "busy" (a load balancer sends traffic elsewhere); once they are answered it is 200 "ok" again."""
    decoding, release = threading.Event(), threading.Event()
    busy = dataclasses.replace(translator)
    decode = busy.translate_ids

    def held(*args, **kwargs):
        decoding.set()
        release.wait(timeout=60)
        return decode(*args, **kwargs)

    monkeypatch.setattr(busy, "translate_ids", held)
    sentences = list(expected)[:2]
    answers: list[httpx.Response] = []
    with InThreadServer(busy, ServeOptions(max_queue=1, max_batch_wait_ms=0)) as url:
        clients = [threading.Thread(target=lambda s=s: answers.append(post(url, {"text": [s]}))) for s in sentences]
        try:
            clients[0].start()
            assert decoding.wait(timeout=30)
            clients[1].start()
            deadline = time.monotonic() + 30
            while httpx.get(f"{url}/health").json()["queued"] < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            health = httpx.get(f"{url}/health")
        finally:
            release.set()
        for client in clients:
            client.join()
        assert health.status_code == 503 and health.headers["retry-after"] == "1"
        assert health.json()["status"] == "busy" and health.json()["ready"] is False
        assert sorted(r.json()["translations"][0] for r in answers) == sorted(expected[s] for s in sentences)
        assert httpx.get(f"{url}/health").json()["status"] == "ok"


def test_model_without_attention_says_so(translator, expected):
    """An rnnencdec model (random weights: only the response's shape matters) served from a thread."""
    cfg = compose_train([*TINY_MODELS["rnnencdec"]])
    src, tgt = translator.src_tok, translator.tgt_tok
    model = build_model(cfg.model, len(src), len(tgt), shared_vocab=False).eval()
    train_config = {**translator.config, "name": "random_rnnencdec", "model": OmegaConf.to_container(cfg.model)}
    rnn = Translator(model, src, tgt, SearchConfig(beam_size=1, max_len_a=0, max_len_b=5), config=train_config)
    with InThreadServer(rnn, ServeOptions()) as url:
        lines = [next(iter(expected)), ""]
        body = post(url, {"text": lines, "attention": True}).json()
        assert body["translations"] == rnn.translate(lines)
        assert body["model"]["arch"] == "rnnencdec" and body["model"]["attention"] is False
        assert body["attention"] is None
        assert body["attention_unavailable"].startswith("rnnencdec has no attention to show")
        assert httpx.get(f"{url}/health").json()["model"]["attention"] is False


def test_options_are_checked():
    with pytest.raises(ConfigError, match="max_lines=0: must be a positive whole number"):
        ServeOptions(max_lines=0)
    with pytest.raises(ConfigError, match="max_batch_wait_ms=-1"):
        ServeOptions(max_batch_wait_ms=-1)
    with pytest.raises(ConfigError, match="request_timeout_s=0: must be > 0"):
        ServeOptions(request_timeout_s=0)


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
