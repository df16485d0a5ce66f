"""``nmt-serve``: a checkpoint behind an HTTP API, with a page to try it in the browser.

    nmt-serve checkpoint=runs/quickstart/best.pt port=8000
    curl -s localhost:8000/translate -d '{"text": ["Ein Hund läuft im Schnee."], "attention": true}'

``POST /translate`` translates a list of lines, ``GET /health`` says whether the server takes requests (200,
or 503 while its queue is full or its decoder has stopped: what a load balancer's health check reads), which
model it serves and how busy it is, ``GET /`` is a page with a text box and an attention heatmap per sentence.

One decoding thread owns the model, so PyTorch's threads are not shared between requests and the event loop
never waits on the model. Requests queue for it; the thread takes the oldest, waits up to
``max_batch_wait_ms`` for more with the same settings (beam size, attention) up to ``max_tokens`` padded
source tokens x beam, and decodes them all in one :meth:`Translator.translate_ids` call: under load, many
small requests cost about what one batch does. Each request then gets its own outputs, in its order.

Errors are JSON ``{"error": "..."}``: 400 a body that is not UTF-8 JSON, 413 a request over ``max_lines``
lines, a line over ``max_chars`` characters (or more subwords than the model encodes) or a body over
``max_body_bytes``, 422 wrong fields or types, 503 a full queue (``max_queue`` requests waiting) or a stopped
decoder, 500 a decoding failure. Lines are refused, never cut: a response always translates what was sent.

Hostile or broken clients: a request whose headers and body have not all arrived ``request_timeout_s`` after
its connection opened or its first byte came has its connection closed, and a kept-alive connection idle for
``keep_alive_s`` after a response is closed, so idle and slow ("slow-loris") connections do not pile up; a
body declared or sent over ``max_body_bytes`` is answered 413 at once (what the client still sends is
discarded until the deadline); a client that disconnects before its answer has its request dropped from the
queue (or its answer discarded), without an error in the log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import h11
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from uvicorn.protocols.http.h11_impl import H11Protocol

from nmt.decoding.search import Hypothesis, SearchConfig
from nmt.decoding.translator import Translator
from nmt.errors import ConfigError

log = logging.getLogger(__name__)
T = TypeVar("T")

REQUEST_FIELDS = ("text", "beam_size", "attention")


@dataclass(frozen=True)
class ServeOptions:
    """What a request may ask for and how the decoder batches (the ``nmt-serve`` options of the same name)."""

    max_lines: int = 64
    max_chars: int = 1000
    max_beam_size: int = 16
    max_body_bytes: int = 1 << 20
    max_batch_wait_ms: float = 10.0
    max_queue: int = 256
    request_timeout_s: float = 30.0
    keep_alive_s: int = 5

    def __post_init__(self) -> None:
        for name in ("max_lines", "max_chars", "max_beam_size", "max_body_bytes", "max_queue", "keep_alive_s"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value}: must be a positive whole number")
        if self.max_batch_wait_ms < 0:
            raise ConfigError(f"max_batch_wait_ms={self.max_batch_wait_ms}: must be >= 0 (0: only what is queued)")
        if self.request_timeout_s <= 0:
            raise ConfigError(f"request_timeout_s={self.request_timeout_s}: must be > 0 (seconds)")


class ApiError(Exception):
    """An HTTP error answered as ``{"error": message}``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


@dataclass(frozen=True)
class TranslateRequest:
    lines: list[str]
    beam_size: int
    attention: bool


def parse_request(body: bytes, options: ServeOptions, default_beam: int) -> TranslateRequest:
    """A validated request from a raw body, or an ApiError that tells the client what to fix."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ApiError(400, f"request body is not valid UTF-8 ({e.reason} at byte {e.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ApiError(400, f"request body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    if not isinstance(data, dict):
        raise ApiError(422, 'request body must be a JSON object such as {"text": ["a sentence"]}')
    unknown = sorted(set(data) - set(REQUEST_FIELDS))
    if unknown:
        raise ApiError(422, f"unknown field {unknown[0]!r}: the fields are {', '.join(REQUEST_FIELDS)}")
    lines = data.get("text")
    if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
        raise ApiError(422, '"text" must be a list of strings, one sentence each')
    if len(lines) > options.max_lines:
        raise ApiError(413, f'"text" has {len(lines)} lines; at most {options.max_lines} per request (max_lines)')
    for i, line in enumerate(lines):
        if len(line) > options.max_chars:
            raise ApiError(
                413, f"text[{i}] has {len(line)} characters; at most {options.max_chars} per line (max_chars)"
            )
        try:
            line.encode("utf-8")
        except UnicodeEncodeError as e:  # JSON's \ud800 escapes decode to lone surrogates
            raise ApiError(422, f"text[{i}] is not valid Unicode: a lone surrogate at character {e.start}") from None
    beam = data.get("beam_size", default_beam)
    if isinstance(beam, bool) or not isinstance(beam, int) or not 1 <= beam <= options.max_beam_size:
        raise ApiError(422, f'"beam_size" must be a whole number from 1 to {options.max_beam_size}, not {beam!r}')
    attention = data.get("attention", False)
    if not isinstance(attention, bool):
        raise ApiError(422, f'"attention" must be true or false, not {attention!r}')
    return TranslateRequest(lines, beam, attention)


@dataclass
class Job:
    """One request waiting for the decoder; the decoding thread settles ``future`` on ``loop``."""

    request: TranslateRequest
    future: asyncio.Future[list[dict[str, Any]]]
    loop: asyncio.AbstractEventLoop
    src_ids: list[list[int]] = field(default_factory=list)

    @property
    def settings(self) -> tuple[int, bool]:
        return self.request.beam_size, self.request.attention

    def settle(self, result: list[dict[str, Any]] | None, error: BaseException | None = None) -> None:
        """Hand the outcome to the request's event loop (its client may have gone, or the loop closed)."""

        def deliver() -> None:
            if not self.future.done():
                if error is None:
                    self.future.set_result(result)
                else:
                    self.future.set_exception(error)

        try:
            self.loop.call_soon_threadsafe(deliver)
        except RuntimeError:  # the loop is closed: nobody is waiting
            pass


@dataclass
class BatchStats:
    """Counts of the decoder's work since start (what ``/health`` reports)."""

    requests: int = 0
    lines: int = 0
    decode_calls: int = 0
    largest_batch: int = 0  # requests decoded together in one call


class DecodingWorker:
    """The one thread that runs the model: batches queued requests that share settings and decodes them."""

    def __init__(self, translator: Translator, options: ServeOptions) -> None:
        self.translator = translator
        self.options = options
        self.base_search = dataclasses.replace(translator.search, n_best=1, need_attention=False)
        self.stats = BatchStats()
        self._stats_lock = threading.Lock()
        self._queue: queue.Queue[Job | None] = queue.Queue()  # unbounded: stop() never waits to enqueue
        self._pending: deque[Job] = deque()  # taken off the queue, waiting for a batch with their settings
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="nmt-decoder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finish the batch in hand, fail what is still queued, and end the thread."""
        self._queue.put(None)
        self._thread.join()

    @property
    def stopped(self) -> bool:
        """Started and no longer running (shut down, or failed)."""
        return self._thread.ident is not None and not self._thread.is_alive()

    @property
    def queued(self) -> int:
        return self._queue.qsize() + len(self._pending)

    def snapshot(self) -> BatchStats:
        with self._stats_lock:
            return dataclasses.replace(self.stats)

    async def translate(self, request: TranslateRequest) -> list[dict[str, Any]]:
        """One result per line, in order (see :meth:`render`); waits without blocking the event loop."""
        loop = asyncio.get_running_loop()
        if self._stopping or self.stopped:
            raise ApiError(503, "the decoder has stopped; see the server log")
        if self.queued >= self.options.max_queue:
            raise ApiError(
                503, f"the server is busy ({self.queued} requests waiting); retry later", {"Retry-After": "1"}
            )
        job = Job(request, loop.create_future(), loop)
        self._queue.put(job)
        return await job.future

    def _take(self, job: Job) -> bool:
        """Tokenize a job's lines. False if the job is not to be decoded: its client has gone (its future is
        cancelled: a flag set once, safe to read from this thread) or a line is longer than the model
        encodes (the job is answered 413)."""
        if job.future.done():
            return False
        job.src_ids = self.translator.src_tok.encode([line.strip() for line in job.request.lines])
        limit = self.translator.max_src_len
        for i, ids in enumerate(job.src_ids):
            if limit is not None and len(ids) > limit:
                job.settle(None, ApiError(413, f"text[{i}] is {len(ids)} subwords; the model encodes at most {limit}"))
                return False
        return True

    def _cost(self, job: Job) -> int:
        """Padded source tokens x beam rows the job adds to a decoding batch."""
        return sum(len(s) + 1 for s in job.src_ids if s) * job.request.beam_size

    def _next_batch(self) -> list[Job]:
        """The oldest waiting job and the others with its settings that arrive within the wait, up to
        ``max_tokens``; jobs with other settings wait in order for a later batch."""
        if not self._pending:
            first = self._queue.get()
            if first is None:
                self._stopping = True
                return []
            if not self._take(first):
                return []
            self._pending.append(first)
        settings = self._pending[0].settings
        batch = [j for j in self._pending if j.settings == settings]
        self._pending = deque(j for j in self._pending if j.settings != settings)
        budget = self.translator.max_tokens - sum(self._cost(j) for j in batch)
        deadline = time.monotonic() + self.options.max_batch_wait_ms / 1000
        while budget > 0 and not self._stopping:
            remaining = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._stopping = True
                break
            if not self._take(job):
                continue
            if job.settings == settings:
                batch.append(job)
                budget -= self._cost(job)
            else:
                self._pending.append(job)
        return batch

    def _run(self) -> None:
        try:
            while not self._stopping:
                batch = self._next_batch()
                if batch:
                    self._decode(batch)
        finally:  # stopping, or an unexpected error (its traceback goes to the log): answer whoever waits
            self._stopping = True
            while True:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    self._pending.append(job)
            for job in self._pending:
                job.settle(None, ApiError(503, "the decoder has stopped"))

    def _decode(self, batch: list[Job]) -> None:
        beam, attention = batch[0].settings
        tr = self.translator
        tr.search = dataclasses.replace(self.base_search, beam_size=beam, need_attention=attention)
        try:
            hyps = tr.translate_ids([s for job in batch for s in job.src_ids])
            results = []
            start = 0
            for job in batch:
                n = len(job.src_ids)
                results.append(self.render(job.src_ids, hyps[start : start + n], attention))
                start += n
        except Exception as e:  # a failing batch must not end the server: its requests get a 500
            log.exception("decoding failed")
            for job in batch:
                job.settle(None, ApiError(500, f"decoding failed: {type(e).__name__}: {e}"))
            return
        with self._stats_lock:
            s = self.stats
            s.decode_calls += 1
            s.requests += len(batch)
            s.lines += sum(len(job.src_ids) for job in batch)
            s.largest_batch = max(s.largest_batch, len(batch))
        for job, result in zip(batch, results):
            job.settle(result)

    def render(self, src_ids: list[list[int]], hyps: list[list[Hypothesis]], attention: bool) -> list[dict[str, Any]]:
        """Per line: the translation and, if asked for, the source and output pieces (each with ``</s>``)
        and the attention matrix, one row per output piece, one column per source piece."""
        items = []
        for ids, nbest in zip(src_ids, hyps):
            hyp = nbest[0]
            item: dict[str, Any] = {"translation": self.translator.detokenize(hyp)}
            if attention and hyp.attention is not None:
                aligned = self.translator.alignment(ids, hyp)
                item.update(
                    source_tokens=aligned["source"], output_tokens=aligned["output"], weights=aligned["attention"]
                )
            items.append(item)
        return items


def model_digest(paths: Sequence[str | Path]) -> str:
    """The first 16 hex digits of the sha256 of the served files (a directory: its files in name order), so
    that replicas behind a load balancer can be checked to serve the same weights."""
    digest = hashlib.sha256()
    for path in map(Path, paths):
        for file in sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]:
            with open(file, "rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
    return digest.hexdigest()[:16]


def model_info(translator: Translator) -> dict[str, Any]:
    cfg = translator.config
    return {
        "name": cfg.get("name"),
        "arch": cfg["model"]["arch"],
        "src_lang": cfg["data"]["src_lang"],
        "tgt_lang": cfg["data"]["tgt_lang"],
        "attention": translator.model.has_attention,
    }


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    too_big = f"request body over {limit} bytes (max_body_bytes)"
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, too_big)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, too_big)
        chunks.append(chunk)
    return b"".join(chunks)


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """``work``'s result, or ClientDisconnect (``work`` cancelled) if the client goes first. Called once the
    body is read: the next ASGI message is then the disconnect."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(request.receive())
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if not task.done():
        task.cancel()
        raise ClientDisconnect()
    return task.result()


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline for each request to arrive in full (headers and body).

    uvicorn closes a kept-alive connection that stays idle after a response (``timeout_keep_alive``), but
    waits for a request in progress, or the first on a new connection, as long as its client likes: such
    connections, sending nothing or a few bytes now and then, pile up. Here the connection closes if its
    request has not all arrived ``request_timeout_s`` after the connection opened or after the request's
    first byte; the time the application takes to answer is not limited. Subclasses set
    ``request_timeout_s`` (see :func:`deadline_protocol`)."""

    request_timeout_s: float = 30.0
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.DONE:  # the whole request is in: the application has it
            self._disarm()
        else:
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.request_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            log.debug("closing a connection whose request did not arrive within %s s", self.request_timeout_s)
            self.transport.close()


def deadline_protocol(request_timeout_s: float) -> type[DeadlineH11Protocol]:
    """The protocol class for uvicorn's ``http`` option (uvicorn makes one instance per connection)."""
    return type("DeadlineH11Protocol", (DeadlineH11Protocol,), {"request_timeout_s": request_timeout_s})


def create_app(translator: Translator, options: ServeOptions, model_id: str | None = None) -> FastAPI:
    """The server's application; its decoding thread runs while the app does (its lifespan). ``model_id``
    (e.g. :func:`model_digest`) is reported by ``/health``."""
    if translator.search.beam_size > options.max_beam_size:
        raise ConfigError(
            f"the default beam size {translator.search.beam_size} is over max_beam_size={options.max_beam_size}"
        )
    worker = DecodingWorker(translator, options)
    info = model_info(translator)
    no_attention = f"{info['arch']} has no attention to show: it encodes the whole source into one vector"
    page = resources.files("nmt.serving").joinpath("page.html").read_text(encoding="utf-8")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        worker.start()
        try:
            yield
        finally:
            await asyncio.to_thread(worker.stop)

    app = FastAPI(title="nmt-serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, e: ApiError) -> JSONResponse:
        return _error(e.status, e.message, e.headers)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, e: HTTPException) -> JSONResponse:
        return _error(e.status_code, str(e.detail), e.headers)

    @app.exception_handler(ClientDisconnect)
    async def client_gone(_: Request, __: ClientDisconnect) -> Response:
        log.debug("a client disconnected before its answer")
        return Response(status_code=400)  # nobody reads it: uvicorn sends nothing on a closed connection

    def search_info(beam_size: int) -> dict[str, Any]:
        return {**{k: getattr(worker.base_search, k) for k in SearchConfig.STORED}, "beam_size": beam_size}

    @app.post("/translate")
    async def translate(request: Request) -> JSONResponse:
        req = parse_request(await read_body(request, options.max_body_bytes), options, worker.base_search.beam_size)
        show = req.attention and translator.has_attention
        items = await unless_disconnected(request, worker.translate(dataclasses.replace(req, attention=show)))
        body: dict[str, Any] = {
            "translations": [item.pop("translation") for item in items],
            "model": info,
            "search": search_info(req.beam_size),
        }
        if show:
            body["attention"] = [item or None for item in items]  # None: an empty line, nothing decoded
        elif req.attention:
            body["attention"] = None
            body["attention_unavailable"] = no_attention
        return JSONResponse(body)

    @app.get("/health")
    async def health() -> JSONResponse:
        queued = worker.queued
        if worker.stopped:
            status, headers = "decoder stopped", None
        elif queued >= options.max_queue:
            status, headers = "busy", {"Retry-After": "1"}
        else:
            status, headers = "ok", None
        body = {
            "status": status,
            "ready": status == "ok",
            "model": info,
            "model_id": model_id,
            "search": search_info(worker.base_search.beam_size),
            "limits": dataclasses.asdict(options),
            "queued": queued,
            "stats": dataclasses.asdict(worker.snapshot()),
        }
        return JSONResponse(body, status_code=200 if status == "ok" else 503, headers=headers)

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    return app


def serve(app: FastAPI, options: ServeOptions, host: str, port: int, access_log: bool) -> None:
    """Run ``app`` with uvicorn until SIGINT / SIGTERM, with the options' connection deadlines."""
    uvicorn.run(
        app,
        host=host,
        port=port,
        http=deadline_protocol(options.request_timeout_s),
        timeout_keep_alive=options.keep_alive_s,
        log_config=None,
        access_log=access_log,
    )
