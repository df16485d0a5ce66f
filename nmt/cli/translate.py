"""``nmt-translate``: translate text with a checkpoint, streaming, one output line per input line.

    echo "Ein Hund läuft im Schnee." | nmt-translate checkpoint=runs/quickstart/best.pt
    nmt-translate checkpoint=runs/quickstart/best.pt input=news.de output=news.en search.beam_size=5
    nmt-translate checkpoint=runs/quickstart/best.pt input=news.de attention=news.attention.jsonl
    nmt-translate checkpoint=exported/quickstart input=news.de                # a CTranslate2 export
    nmt-translate "checkpoint=[a/best.pt,b/best.pt]" input=news.de            # an ensemble

Input is read ``chunk_lines`` lines at a time, so files of any size stream in bounded memory. Empty
input lines give empty output lines. With ``search.n_best=N`` each input line yields N lines
``<line number>\\t<score>\\t<translation>``.

Each chunk's translations are written and flushed as a whole. Output closed early (``| head``) ends the
command quietly with status 0; Ctrl-C (SIGINT) stops it with status 130, the output holding the complete
translations of the chunks done, and stderr saying how many input lines that is.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import BinaryIO, TextIO

import hydra
from omegaconf import DictConfig

from nmt.cli.startup import report_user_errors, setup_cpu
from nmt.data.corpus import BOM
from nmt.decoding.backend import translator_from_cfg
from nmt.decoding.translator import Translator, search_origin
from nmt.errors import DataError
from nmt.paths import CONFIG_DIR

log = logging.getLogger(__name__)


def read_chunks(stream: BinaryIO, name: str, chunk_lines: int) -> Iterator[tuple[int, list[str]]]:
    """Yield (number of the first line, lines) chunks of UTF-8 text; only ``\\n`` ends a line, and a
    byte-order mark opening the stream is not part of the first line."""
    chunk: list[str] = []
    first = 1
    for lineno, raw in enumerate(stream, start=1):
        try:
            line = raw.decode("utf-8").rstrip("\n").rstrip("\r")
            chunk.append(line.removeprefix(BOM) if lineno == 1 else line)
        except UnicodeDecodeError as e:
            raise DataError(
                f"{name}:{lineno}: not valid UTF-8 ({e.reason} at byte {e.start}); re-encode it as UTF-8"
            ) from None
        if len(chunk) == chunk_lines:
            yield first, chunk
            first, chunk = lineno + 1, []
    if chunk:
        yield first, chunk


def _one_line(text: str) -> str:
    """Keep the one-line-per-input contract even if a detokenized output contains a line boundary
    (\n, \r, \x0b, \x0c, \x1c-\x1e, \x85, U+2028, U+2029: what ``str.splitlines`` splits on)."""
    parts = text.splitlines()
    return " ".join(parts) if len(parts) > 1 or text != (parts[0] if parts else "") else text


class Interrupted(KeyboardInterrupt):
    """SIGINT during :func:`translate_stream`; the output holds the translations of the first ``lines``
    input lines, each complete."""

    def __init__(self, lines: int) -> None:
        super().__init__(lines)
        self.lines = lines


@contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold back a Ctrl-C until the block is done, so that an interrupted write cannot leave half a line
    behind; a second Ctrl-C interrupts at once (a reader that stopped reading blocks the write). Main
    thread only, as every signal handler."""
    received: list[int] = []

    def hold(signum: int, frame: object) -> None:
        if received:
            raise KeyboardInterrupt
        received.append(signum)

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def translate_stream(
    translator: Translator, src: BinaryIO, out: TextIO, name: str, chunk_lines: int, attention: TextIO | None = None
) -> int:
    """Translate ``src`` into ``out``; returns the number of input lines. With ``attention``, also write one
    JSON line per output line there: its input line number, rank in the n-best, source and output subwords,
    and the (output x source) attention matrix (null for a model without attention).

    Each chunk is written and flushed at once, Ctrl-C held back meanwhile: a KeyboardInterrupt leaves the
    outputs of whole chunks only, and comes out as :class:`Interrupted` with their number of input lines."""
    n_best = translator.search.n_best
    count = 0
    try:
        for first, lines in read_chunks(src, name, chunk_lines):
            src_ids = translator.src_tok.encode([line.strip() for line in lines])
            texts, records = [], []
            for offset, (ids, hyps) in enumerate(zip(src_ids, translator.translate_ids(src_ids))):
                for rank, h in enumerate(hyps[:n_best]):
                    text = _one_line(translator.detokenize(h))
                    texts.append(text + "\n" if n_best == 1 else f"{first + offset}\t{h.score:.4f}\t{text}\n")
                    if attention is not None:
                        record = {"line": first + offset, "rank": rank, **translator.alignment(ids, h)}
                        records.append(json.dumps(record, ensure_ascii=False) + "\n")
            with sigint_deferred():
                out.write("".join(texts))
                out.flush()
                if attention is not None:
                    attention.write("".join(records))
                    attention.flush()
                count += len(lines)
    except KeyboardInterrupt:
        raise Interrupted(count) from None
    return count


@hydra.main(config_path=str(CONFIG_DIR), config_name="translate", version_base="1.3")
@report_user_errors("nmt-translate")
def main(cfg: DictConfig) -> None:
    setup_cpu(int(cfg.threads))
    try:
        translate(cfg)
    except BrokenPipeError:
        # The reader went away (``| head``): stop as a Unix filter does. Whatever is left in stdout's buffer
        # goes to /dev/null, or the interpreter's last flush would fail again at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except Interrupted as e:
        print(
            f"nmt-translate: interrupted after {e.lines} input lines; the output holds their translations",
            file=sys.stderr,
        )
        sys.exit(130)
    except KeyboardInterrupt:
        print("nmt-translate: interrupted", file=sys.stderr)
        sys.exit(130)


def translate(cfg: DictConfig) -> None:
    """nmt-translate's work: load the translator and stream the input through it."""
    search = {**cfg.search, "need_attention": True} if cfg.attention else cfg.search
    translator = translator_from_cfg(cfg, search)
    log.info("decoding with %s %s", translator.search.describe(), search_origin(cfg.search))
    with ExitStack() as stack:
        if cfg.input == "-":
            src, name = sys.stdin.buffer, "<stdin>"
        else:
            try:
                src, name = stack.enter_context(open(cfg.input, "rb")), str(cfg.input)
            except OSError as e:
                raise DataError(f"cannot read input={cfg.input}: {e.strerror}") from None
        out = sys.stdout if cfg.output == "-" else stack.enter_context(open(cfg.output, "w", encoding="utf-8"))
        att = stack.enter_context(open(cfg.attention, "w", encoding="utf-8")) if cfg.attention else None
        n = translate_stream(translator, src, out, name, int(cfg.chunk_lines), att)
    if translator.truncated:
        log.warning(
            "%d input lines were longer than %d subwords and were cut to that length before translating",
            translator.truncated,
            translator.max_src_len,
        )
    log.info("translated %d lines", n)


if __name__ == "__main__":
    main()
