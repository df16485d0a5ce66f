"""The console scripts as a user runs them: nmt-translate, nmt-evaluate and nmt-train's error messages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import read_pairs

from nmt.training.checkpoint import load_checkpoint, save_checkpoint

BIN = Path(sys.executable).parent


def cli(name: str, *args: str, stdin: bytes | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / name), *args],
        input=stdin,
        capture_output=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )


def test_translate_stdin_keeps_one_line_per_input_line(tiny_checkpoint):
    de, en = read_pairs("train", 3)
    lines = [de[0], "", "   ", de[1], "\x07 ✨ 漢字 \t", de[2]]
    out = cli(
        "nmt-translate",
        f"checkpoint={tiny_checkpoint}",
        "search.beam_size=2",
        stdin="".join(x + "\n" for x in lines).encode(),
    )
    assert out.returncode == 0, out.stderr.decode()
    got = out.stdout.decode().split("\n")
    assert got[-1] == "" and len(got) - 1 == len(lines)
    assert got[1] == "" and got[2] == ""
    assert got[0] == en[0] and got[3] == en[1] and got[5] == en[2]


def test_translate_ignores_a_byte_order_mark(tiny_checkpoint):
    de, en = read_pairs("train", 2)
    stdin = ("\ufeff" + de[0] + "\n" + de[1] + "\n").encode()
    out = cli("nmt-translate", f"checkpoint={tiny_checkpoint}", "search.beam_size=1", stdin=stdin)
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.decode().splitlines() == en[:2]


def test_translate_file_to_file_and_nbest(tiny_checkpoint, tmp_path):
    de, en = read_pairs("train", 5)
    src = tmp_path / "in.de"
    src.write_text("\n".join(de[:2] + [""] + de[2:]) + "\n", encoding="utf-8")
    out = cli(
        "nmt-translate",
        f"checkpoint={tiny_checkpoint}",
        f"input={src}",
        f"output={tmp_path / 'out.en'}",
        "chunk_lines=2",
    )
    assert out.returncode == 0, out.stderr.decode()
    assert (tmp_path / "out.en").read_text(encoding="utf-8").split("\n") == en[:2] + [""] + en[2:] + [""]
    out = cli("nmt-translate", f"checkpoint={tiny_checkpoint}", f"input={src}", "search.n_best=3", "search.beam_size=3")
    rows = [r.split("\t") for r in out.stdout.decode().splitlines()]
    assert [int(r[0]) for r in rows] == [1, 1, 1, 2, 2, 2, 3, 4, 4, 4, 5, 5, 5, 6, 6, 6]
    scores = [float(r[1]) for r in rows if r[0] == "1"]
    assert scores == sorted(scores, reverse=True)


def test_translate_rejects_non_utf8_input_with_line_number(tiny_checkpoint):
    out = cli("nmt-translate", f"checkpoint={tiny_checkpoint}", stdin=b"gut\nschlecht \xff\n")
    assert out.returncode == 2
    assert out.stderr.decode().strip() == (
        "nmt-translate: error: <stdin>:2: not valid UTF-8 (invalid start byte at byte 9); re-encode it as UTF-8"
    )


def test_evaluate_prints_bleu_with_signature(tiny_checkpoint, tiny_root, tmp_path):
    out = cli(
        "nmt-evaluate",
        f"checkpoint={tiny_checkpoint}",
        "split=test2016",
        f"data_root={tiny_root}",
        f"output_dir={tmp_path}",
    )
    assert out.returncode == 0, out.stderr.decode()
    text = out.stdout.decode()
    assert "test2016: BLEU = " in text and "BLEU signature: nrefs:1|case:mixed|eff:no|tok:13a" in text
    hyps = (tmp_path / "test2016.hyp").read_text(encoding="utf-8").splitlines()
    assert len(hyps) == 64
    # The checkpoint's run set search.beam_size=1 (and kept alpha 0.6, 1.5|x|+10): that is what decodes.
    assert (
        "decoding with greedy, length penalty alpha 0.6, max output length 1.5 * source + 10 (the checkpoint's" in text
    )


def test_command_line_search_options_override_the_checkpoint(tiny_checkpoint, tiny_root, tmp_path):
    args = [f"checkpoint={tiny_checkpoint}", f"data_root={tiny_root}", f"output_dir={tmp_path}"]
    out = cli("nmt-evaluate", *args, "search.beam_size=3", "search.max_len_b=20")
    assert out.returncode == 0, out.stderr.decode()
    assert (
        "decoding with beam 3, length penalty alpha 0.6, max output length 1.5 * source + 20 "
        "(the checkpoint's settings; beam_size, max_len_b from the command line)"
    ) in out.stdout.decode()


def test_evaluate_scores_any_parallel_files(tiny_checkpoint, tmp_path):
    de, en = read_pairs("train", 10)
    (tmp_path / "news.de").write_text("".join(s + "\n" for s in de), encoding="utf-8")
    (tmp_path / "news.en").write_text("".join(s + "\n" for s in en), encoding="utf-8")
    args = [f"checkpoint={tiny_checkpoint}", f"output_dir={tmp_path / 'eval'}"]
    out = cli("nmt-evaluate", *args, f"source={tmp_path / 'news.de'}", f"reference={tmp_path / 'news.en'}")
    assert out.returncode == 0, out.stderr.decode()
    text = out.stdout.decode()
    assert "news.de: BLEU = 100.00" in text and "BLEU signature: nrefs:1|case:mixed|eff:no|tok:13a" in text
    assert (tmp_path / "eval" / "news.de.hyp").read_text(encoding="utf-8").splitlines() == en
    (tmp_path / "short.en").write_text("".join(s + "\n" for s in en[:9]), encoding="utf-8")
    out = cli("nmt-evaluate", *args, f"source={tmp_path / 'news.de'}", f"reference={tmp_path / 'short.en'}")
    assert out.returncode == 2
    assert "news.de has 10 lines but" in out.stderr.decode() and "short.en has 9" in out.stderr.decode()
    out = cli("nmt-evaluate", *args, f"source={tmp_path / 'news.de'}")
    assert out.returncode == 2 and "give both source=FILE and reference=FILE" in out.stderr.decode()
    out = cli("nmt-evaluate", *args, f"source={tmp_path / 'nope.de'}", f"reference={tmp_path / 'news.en'}")
    assert out.returncode == 2 and "nope.de: no such file" in out.stderr.decode()


def test_translate_writes_attention_as_json_lines(tiny_checkpoint, tmp_path):
    import json

    de, en = read_pairs("train", 3)
    att = tmp_path / "att.jsonl"
    out = cli(
        "nmt-translate", f"checkpoint={tiny_checkpoint}", f"attention={att}", stdin=f"{de[0]}\n\n{de[1]}\n".encode()
    )
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.decode().split("\n") == [en[0], "", en[1], ""]
    records = [json.loads(line) for line in att.read_text(encoding="utf-8").splitlines()]
    assert [r["line"] for r in records] == [1, 2, 3]
    assert records[1] == {"line": 2, "rank": 0, "source": [], "output": [], "attention": None}
    for r in (records[0], records[2]):
        assert r["source"][-1] == r["output"][-1] == "</s>"
        matrix = torch.tensor(r["attention"])
        assert matrix.shape == (len(r["output"]), len(r["source"]))
        torch.testing.assert_close(matrix.sum(-1), torch.ones(len(r["output"])), atol=1e-3, rtol=0)


def test_corrupt_checkpoint_is_reported(tiny_checkpoint, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(tiny_checkpoint.read_bytes()[:5000])
    out = cli("nmt-translate", f"checkpoint={bad}", stdin=b"Hallo\n")
    assert out.returncode == 2 and "is truncated or corrupt" in out.stderr.decode()
    old = tmp_path / "old.pt"
    payload = load_checkpoint(tiny_checkpoint)
    payload.pop("format_version")
    torch.save({**payload, "format_version": 0}, old)
    out = cli("nmt-translate", f"checkpoint={old}", stdin=b"Hallo\n")
    assert out.returncode == 2 and "format version 0" in out.stderr.decode()


def test_checkpoint_write_is_atomic(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(2)}})
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]
    assert load_checkpoint(path)["model"]["w"].tolist() == [1.0, 1.0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["model=lstm"], "Could not find 'model/lstm'"),
        (["model.attention.kind=local_p"], "Key 'attention' is not in struct"),
        (["+model.attention.kind=local_p"], "option(s) attention do not apply to this model"),
        (["data.source=ftp"], "data.source='ftp': use auto, local, hub"),
        (["trainer.max_steps=abc"], "trainer.max_steps='abc': expected a whole number"),
    ],
)
def test_train_config_mistakes_are_explained(args, message, tiny_root, tmp_path):
    out = cli("nmt-train", f"data.root={tiny_root}", f"run_dir={tmp_path}", *args)
    assert out.returncode != 0
    assert message in out.stderr.decode()


def test_nbest_larger_than_beam_is_refused(tiny_checkpoint):
    out = cli("nmt-translate", f"checkpoint={tiny_checkpoint}", "search.n_best=5", "search.beam_size=2", stdin=b"a\n")
    assert out.returncode == 2
    assert "search.n_best=5 and search.beam_size=2: need 1 <= n_best <= beam_size" in out.stderr.decode()


def test_int8_of_a_checkpoint_is_a_one_line_error_naming_the_export(tiny_checkpoint):
    out = cli("nmt-translate", f"checkpoint={tiny_checkpoint}", "quantization=int8", stdin=b"a\n")
    assert out.returncode == 2
    (line,) = [x for x in out.stderr.decode().splitlines() if "error" in x]
    assert line.startswith("nmt-translate: error: quantization=int8")
    assert f"nmt-export checkpoint={tiny_checkpoint} output=DIR quantization=int8" in line and "checkpoint=DIR" in line


MMAPPED_BYTES_WITH_A_BIG_TENSOR = """
import ctypes, sys, torch
from nmt.cli.startup import setup_cpu

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] != "default":
    setup_cpu(1)
before = libc.mallinfo2().hblkhd
logits = torch.empty(8000, 8000)  # 256 MB, the size class of a batch's logits
print(libc.mallinfo2().hblkhd - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc allocator settings")
@pytest.mark.parametrize("mode", ["default", "setup", "keep"])
def test_setup_cpu_leaves_the_allocator_and_glibcs_variables_keep_freed_memory(mode):
    """glibc mmaps (and on free unmaps) a 256 MB tensor; setup_cpu leaves that as it is (it once told glibc
    to keep freed memory, through ctypes); the variables its docstring names do it when a user asks."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    if mode == "keep":
        env.update(MALLOC_MMAP_MAX_="0", MALLOC_TRIM_THRESHOLD_="2147483647")
    out = subprocess.run(
        [sys.executable, "-c", MMAPPED_BYTES_WITH_A_BIG_TENSOR, mode], capture_output=True, text=True, env=env
    )
    if "mallinfo2" in out.stderr:
        pytest.skip("not glibc >= 2.33")
    assert out.returncode == 0, out.stderr
    mmapped = int(out.stdout)
    assert (mmapped == 0) if mode == "keep" else (mmapped >= 8000 * 8000 * 4)


@pytest.mark.parametrize("script", sorted(p.name for p in (Path(__file__).parents[2] / "scripts").glob("*.py")))
def test_every_script_prints_its_help(script):
    """A '%' in an argparse help string crashed `benchmark.py --help` with a TypeError."""
    path = Path(__file__).parents[2] / "scripts" / script
    done = subprocess.run([sys.executable, str(path), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
