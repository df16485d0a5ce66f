"""nmt-translate as a stream: flat memory on 200,000 lines, a quiet end when its reader goes away (``| head``),
and only complete lines when stopped with Ctrl-C; with a checkpoint and with its CTranslate2 export."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import N_PAIRS, read_pairs

from nmt.cli.translate import Interrupted, translate_stream
from nmt.decoding.export import export_ctranslate2
from nmt.decoding.search import SearchConfig
from nmt.decoding.translator import Translator

BIN = Path(sys.executable).parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
# How much more the 200k-line run may peak at than the 1k-line one: room for allocator and interpreter noise,
# well below what holding the 200k lines' input or output in memory adds.
RSS_MARGIN_MIB = 64


@pytest.fixture(scope="module", params=["checkpoint", "ctranslate2"])
def model(request, tiny_checkpoint, tmp_path_factory) -> Path:
    """The tiny checkpoint, or its nmt-export directory: both decode through the same streaming loop."""
    if request.param == "checkpoint":
        return tiny_checkpoint
    return export_ctranslate2(str(tiny_checkpoint), tmp_path_factory.mktemp("ct2") / "export")


def short_lines(n: int) -> str:
    """``n`` input lines of one to three words of the training sentences, every seventh one empty: short, so
    that the tiny model translates 200k of them in seconds."""
    de, _ = read_pairs("train", N_PAIRS)
    return "".join("\n" if i % 7 == 6 else " ".join(de[i % N_PAIRS].split()[: 1 + i % 3]) + "\n" for i in range(n))


def translate_cmd(model: Path, src: Path, *extra: str) -> list[str]:
    """Greedy search with outputs of at most four subwords, on one thread."""
    search = ["search.beam_size=1", "search.max_len_a=0", "search.max_len_b=4"]
    return [str(BIN / "nmt-translate"), f"checkpoint={model}", f"input={src}", *search, "threads=1", *extra]


# Run a command in a fresh process, whose RUSAGE_CHILDREN then holds that command's peak RSS alone (KiB on Linux).
PEAK_RSS = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, timeout=240); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def peak_rss_mib(cmd: list[str]) -> float:
    out = subprocess.run([sys.executable, "-c", PEAK_RSS, *cmd], capture_output=True, timeout=300, env=ENV)
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    return int(out.stdout) / 1024


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux only")
def test_memory_stays_flat_on_200k_lines(tiny_checkpoint, tmp_path):
    peaks = {}
    for n in (1_000, 200_000):
        src, out = tmp_path / f"{n}.de", tmp_path / f"{n}.en"
        src.write_text(short_lines(n), encoding="utf-8")
        peaks[n] = peak_rss_mib(translate_cmd(tiny_checkpoint, src, f"output={out}"))
        assert out.read_bytes().count(b"\n") == n
    assert peaks[200_000] - peaks[1_000] < RSS_MARGIN_MIB, peaks


def test_output_closed_early_ends_quietly(model, tmp_path):
    """``nmt-translate ... | head -1``: exit status 0 and nothing on stderr."""
    src = tmp_path / "in.de"
    src.write_text(short_lines(20_000), encoding="utf-8")  # output far beyond a pipe's 64 KiB buffer
    proc = subprocess.Popen(
        translate_cmd(model, src, "chunk_lines=500"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV
    )
    try:
        first = proc.stdout.readline()
        proc.stdout.close()
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert first.endswith(b"\n") and first.strip()
    assert proc.returncode == 0 and err == b"", err.decode()


def ctrl_c_as_at_a_terminal() -> None:
    """SIGINT to its default action in the child, whatever this process inherited: a suite started in the
    background (``cmd &``, nohup) ignores SIGINT, and so would the command, which Python then leaves ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_sigint_leaves_complete_lines_of_the_full_output(model, tmp_path):
    src, out = tmp_path / "in.de", tmp_path / "out.en"
    text = short_lines(200_000)
    src.write_text(text, encoding="utf-8")
    proc = subprocess.Popen(
        translate_cmd(model, src, f"output={out}", "chunk_lines=500"),
        stderr=subprocess.PIPE,
        env=ENV,
        preexec_fn=ctrl_c_as_at_a_terminal,
    )
    try:
        deadline = time.monotonic() + 120
        while not (out.is_file() and out.stat().st_size) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # until the first chunk is written
        assert proc.poll() is None, "nmt-translate ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    written = out.read_bytes()
    done = written.count(b"\n")
    assert proc.returncode == 130 and 0 < done < 200_000 and written.endswith(b"\n")
    assert err.decode().splitlines() == [
        f"nmt-translate: interrupted after {done} input lines; the output holds their translations"
    ]
    # The same lines as a run over the whole input gives them (translated alone: chunks do not interact).
    head = tmp_path / "head.de"
    head.write_text("".join(text.splitlines(keepends=True)[:done]), encoding="utf-8")
    full = subprocess.run(translate_cmd(model, head, "chunk_lines=500"), capture_output=True, timeout=120, env=ENV)
    assert full.returncode == 0 and full.stdout == written


class InterruptedWhileWriting(io.StringIO):
    """An output that gets a Ctrl-C as its first chunk starts being written."""

    def write(self, text: str) -> int:
        if not self.tell():
            os.kill(os.getpid(), signal.SIGINT)
        return super().write(text)


def test_ctrl_c_during_a_write_is_held_until_the_chunk_is_written(tiny_checkpoint):
    translator = Translator.from_checkpoint(str(tiny_checkpoint), SearchConfig(beam_size=1))
    de, en = read_pairs("train", 7)
    out, handler = InterruptedWhileWriting(), signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt) as caught:
        translate_stream(translator, io.BytesIO("".join(s + "\n" for s in de).encode()), out, "<test>", 3)
    assert isinstance(caught.value, Interrupted) and caught.value.lines == 3
    assert out.getvalue() == "".join(s + "\n" for s in en[:3])
    assert signal.getsignal(signal.SIGINT) is handler
