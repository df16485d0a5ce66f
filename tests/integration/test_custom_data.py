"""The README's "Your own data" section as a user follows it: two languages' parallel text files in a folder
of their own, ``nmt-train data=custom data.root=... data.src_lang=de data.tgt_lang=en``, then
``nmt-translate`` and ``nmt-evaluate`` with the checkpoint it wrote (configs/data/custom.yaml)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import read_pairs

BIN = Path(sys.executable).parent

# Added to the README's command to make it fast here: a tiny Transformer, a small vocabulary, a few
# updates, one validation (on the loss) at the end.
TINY = [
    "data.tokenizer.vocab_size=400",
    "model.d_model=64",
    "model.ff_dim=128",
    "model.encoder_layers=1",
    "model.decoder_layers=1",
    "trainer.max_steps=30",
    "trainer.validate_every=0",
    "trainer.validate_bleu=false",
    "trainer.early_stopping.metric=loss",
]


def run(cwd: Path, *cmd: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NMT_CACHE_DIR": str(cwd / "cache")}
    done = subprocess.run([str(BIN / cmd[0]), *cmd[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}"
    return done


def write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def test_train_translate_and_evaluate_on_your_own_files(tmp_path):
    # /path/to/corpus/{train,valid,test}.{de,en}: one sentence per line, line N of .de translates to line N of .en
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    de, en = read_pairs("train", 64)
    for stem, n in (("train", 64), ("valid", 16), ("test", 16)):
        write(corpus / f"{stem}.de", de[:n])
        write(corpus / f"{stem}.en", en[:n])

    readme = ["data=custom", f"data.root={corpus}", "data.src_lang=de", "data.tgt_lang=en"]
    readme += ["trainer.early_stopping.patience=5", "trainer.max_epochs=30"]
    run(tmp_path, "nmt-train", *readme, *TINY)

    run_dir = tmp_path / "runs" / "custom_de_en_transformer_small"
    checkpoint = "runs/custom_de_en_transformer_small/best.pt"
    assert (tmp_path / checkpoint).is_file()
    assert (run_dir / "eval" / "test.hyp").is_file()  # data.test_splits=[test], scored after training

    write(tmp_path / "input.de", de[:3])
    run(tmp_path, "nmt-translate", f"checkpoint={checkpoint}", "input=input.de", "output=output.en")
    out = (tmp_path / "output.en").read_text(encoding="utf-8").splitlines()
    assert len(out) == 3  # one output line per input line

    done = run(tmp_path, "nmt-evaluate", f"checkpoint={checkpoint}", "split=test", f"data_root={corpus}")
    assert "BLEU signature" in done.stdout + done.stderr
