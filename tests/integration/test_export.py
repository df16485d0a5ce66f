"""nmt-export: CTranslate2 decodes an exported Transformer as PyTorch does, for every layout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import ctranslate2
import pytest
import torch
from conftest import read_pairs, tiny_config
from omegaconf import OmegaConf

from nmt.data.batching import collate
from nmt.decoding.backend import load_translator
from nmt.decoding.export import export_ctranslate2
from nmt.decoding.search import SearchConfig
from nmt.decoding.translator import Translator
from nmt.errors import ConfigError
from nmt.evaluation.metrics import corpus_scores
from nmt.models import build_model
from nmt.training.checkpoint import load_checkpoint, save_checkpoint
from nmt.training.run import run


def _ct2_pieces(translator, lines: list[str]) -> list[list[str]]:
    return [translator.src_tok.sp.encode(s, out_type=str) + ["</s>"] for s in lines]


def test_float32_export_decodes_like_pytorch(tiny_checkpoint, tmp_path):
    out = export_ctranslate2(str(tiny_checkpoint), tmp_path / "ct2", "float32")
    assert (out / "model.bin").is_file() and (out / "source.spm.model").is_file()
    translator = Translator.from_checkpoint(str(tiny_checkpoint), SearchConfig(beam_size=1))
    de, _ = read_pairs("train", 64)
    ours = [h[0].tokens for h in translator.translate_nbest(de)]
    ct2 = ctranslate2.Translator(str(out), device="cpu", intra_threads=1)
    results = ct2.translate_batch(_ct2_pieces(translator, de), beam_size=1, max_decoding_length=100)
    theirs = [[translator.tgt_tok.sp.piece_to_id(p) for p in r.hypotheses[0]] for r in results]
    assert theirs == ours  # sentence for sentence
    translator.search = SearchConfig(beam_size=4, length_penalty=0.0)
    beam = [h[0].tokens for h in translator.translate_nbest(de)]
    results = ct2.translate_batch(_ct2_pieces(translator, de), beam_size=4, length_penalty=0.0, max_decoding_length=100)
    same = sum(b == [translator.tgt_tok.sp.piece_to_id(p) for p in r.hypotheses[0]] for b, r in zip(beam, results))
    assert same >= 0.99 * len(de)


def test_translator_translate_and_evaluate_accept_the_exported_directory(tiny_checkpoint, tiny_root, tmp_path):
    """One command scores PyTorch and CTranslate2 decoding: the directory stands where a checkpoint does."""
    out = export_ctranslate2(str(tiny_checkpoint), tmp_path / "ct2", "float32")
    de, en = read_pairs("train", 64)
    ct2 = load_translator(out, beam_size=1, need_attention=True)
    assert ct2.translate(de) == Translator.from_checkpoint(tiny_checkpoint, beam_size=1).translate(de) == en
    for line, hyp in zip(de[:4], ct2.translate_nbest(de[:4])):
        assert hyp[0].attention.shape == (len(hyp[0].tokens) + 1, len(ct2.src_tok.encode([line])[0]) + 1)
    bin_dir = Path(sys.executable).parent
    done = subprocess.run(
        [str(bin_dir / "nmt-translate"), f"checkpoint={out}", "search.beam_size=1"],
        input=f"{de[0]}\n\n{de[1]}\n".encode(),
        capture_output=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().split("\n") == [en[0], "", en[1], ""]
    done = subprocess.run(
        [str(bin_dir / "nmt-evaluate"), f"checkpoint={out}", f"data_root={tiny_root}", f"output_dir={tmp_path}"],
        capture_output=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert "test2016: BLEU = 100.00" in done.stdout.decode()


def test_exported_directory_decodes_batches_at_once_with_inter_threads(tiny_checkpoint, tmp_path):
    """inter_threads=2 gives CTranslate2 two replicas of one thread each, fed two batches at once, as
    PyTorch decoding does: the same outputs, in order; PyTorch keeps its thread count (building the
    replicas set the process's OpenMP threads to 1, which slowed PyTorch's decoding after it)."""
    out = export_ctranslate2(str(tiny_checkpoint), tmp_path / "ct2", "float32")
    de, en = read_pairs("train", 64)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone = load_translator(out, beam_size=4, max_tokens=96).translate(de)
        torch.set_num_threads(2)
        ct2 = load_translator(out, beam_size=4, max_tokens=96, inter_threads=2)
        assert ct2.model.num_translators == 2 and ct2.inter_threads == 2
        assert torch.get_num_threads() == 2  # CTranslate2 set the process's OpenMP threads to its intra_threads
        assert ct2.translate(de) == alone
        ct2.search = SearchConfig(beam_size=1)
        assert ct2.translate(de) == en
    finally:
        torch.set_num_threads(threads)


def test_int8_export_keeps_the_translations(tiny_checkpoint, tmp_path):
    """int8 quantisation decodes real sentences (the 64 memorised Multi30k pairs) nearly as float32 does
    (this tiny model is too small for a tight margin on every CPU's int8 kernels, so the bound is loose);
    ``nmt-export ... quantization=int8`` then a decoding command on the directory is the int8 path."""
    de, en = read_pairs("train", 64)
    bin_dir = Path(sys.executable).parent
    done = subprocess.run(
        [
            str(bin_dir / "nmt-export"),
            f"checkpoint={tiny_checkpoint}",
            f"output={tmp_path / 'int8'}",
            "quantization=int8",
        ],
        capture_output=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr.decode()
    bleu = {}
    for q in ("float32", "int8"):
        directory = tmp_path / q if q == "int8" else export_ctranslate2(str(tiny_checkpoint), tmp_path / q, q)
        bleu[q] = corpus_scores(load_translator(directory, beam_size=4).translate(de), en).bleu
    assert bleu["float32"] > 90 and bleu["int8"] > 85, bleu
    done = subprocess.run(
        [str(bin_dir / "nmt-translate"), f"checkpoint={tmp_path / 'int8'}", "quantization=int8", "device=cpu"],
        input=f"{de[0]}\n{de[1]}\n".encode(),
        capture_output=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert len(done.stdout.decode().splitlines()) == 2
    # quantization=int8 on a float32 directory: CTranslate2 quantizes it when loading (its compute_type)
    loaded = load_translator(tmp_path / "float32", quantization="int8", device="cpu")
    assert loaded.model.compute_type == "int8_float32" and loaded.translate(de[:2])


def test_int8_on_a_gpu_is_ctranslate2s_to_run(tiny_checkpoint, tmp_path, monkeypatch):
    """quantization=int8 on a CUDA device: CTranslate2 runs int8 on its GPUs, so an exported directory
    loads there with compute_type int8; a PyTorch checkpoint is told to export itself. No GPU here, so
    CTranslate2 is told it sees one and its Translator records what it was asked for."""
    directory = export_ctranslate2(str(tiny_checkpoint), tmp_path / "float32", "float32")
    asked = {}

    def fake_translator(path: str, **kwargs) -> object:
        asked.update(kwargs)
        return object()

    monkeypatch.setattr(ctranslate2, "get_cuda_device_count", lambda: 1)
    monkeypatch.setattr(ctranslate2, "Translator", fake_translator)
    loaded = load_translator(directory, quantization="int8", device="cuda")
    assert loaded.device.type == "cuda" and asked["device"] == "cuda" and asked["compute_type"] == "int8"
    with pytest.raises(ConfigError, match="nmt-export checkpoint=.* output=DIR quantization=int8"):
        load_translator(tiny_checkpoint, quantization="int8", device="cuda")


@pytest.mark.parametrize(
    "layout",
    [{"pre_norm": False}, {"pre_norm": True}, {"pre_norm": True, "tie_output": False}, {"positions": "learned"}],
    ids=["post-norm", "pre-norm", "pre-norm-untied", "learned-positions"],
)
def test_every_layout_scores_like_pytorch(layout, tiny_checkpoint, tmp_path):
    """A random model of each layout, exported: CTranslate2's log-probabilities of the references equal
    PyTorch's teacher-forced ones (so positions, scaling, fused projections and norms all line up)."""
    payload = load_checkpoint(tiny_checkpoint)
    cfg = tiny_config(tmp_path, tmp_path, tmp_path, "transformer", [f"model.{k}={v}" for k, v in layout.items()])
    torch.manual_seed(0)
    vocab = payload["model"]["tgt_embed.weight"].size(0)
    model = build_model(cfg.model, vocab, vocab, shared_vocab=True)
    config = OmegaConf.to_yaml(cfg, resolve=True)
    save_checkpoint(tmp_path / "random.pt", {**payload, "model": model.state_dict(), "config": config})
    out = export_ctranslate2(str(tmp_path / "random.pt"), tmp_path / "ct2", "float32")
    translator = Translator.from_checkpoint(str(tmp_path / "random.pt"))
    de, en = read_pairs("train", 8)
    src_ids, tgt_ids = translator.src_tok.encode(de), translator.tgt_tok.encode(en)
    batch = collate(list(range(8)), src_ids, tgt_ids)
    with torch.no_grad():
        logits, _ = translator.model.eval()(batch.src, batch.src_lengths, batch.tgt_in)
    logp = torch.log_softmax(logits.float(), -1).gather(2, batch.tgt_out[..., None]).squeeze(-1)
    targets = [[translator.tgt_tok.sp.id_to_piece(i) for i in t] for t in tgt_ids]
    scored = ctranslate2.Translator(str(out), device="cpu").score_batch(_ct2_pieces(translator, de), targets)
    for i, result in enumerate(scored):
        expected = logp[i, : len(tgt_ids[i]) + 1]  # the words and EOS
        torch.testing.assert_close(torch.tensor(result.log_probs), expected, atol=2e-3, rtol=0)


def test_rnn_checkpoints_are_refused_in_one_line(tmp_path, tiny_root, cache_dir):
    run(
        tiny_config(tiny_root, cache_dir, tmp_path / "run", "rnnsearch", ["trainer.max_steps=1", "data.test_splits=[]"])
    )
    out = subprocess.run(
        [
            str(Path(sys.executable).parent / "nmt-export"),
            f"checkpoint={tmp_path / 'run' / 'best.pt'}",
            f"output={tmp_path}/x",
        ],
        capture_output=True,
        timeout=300,
    )
    assert out.returncode == 2
    assert "CTranslate2 has no RNN decoder" in out.stderr.decode()


def test_narrow_keys_are_refused(tiny_checkpoint, tmp_path):
    """model.key_dim below d_model / heads (Table 3 row B) has no CTranslate2 layout: refused by name."""
    payload = load_checkpoint(tiny_checkpoint)
    cfg = tiny_config(tmp_path, tmp_path, tmp_path, "transformer", ["model.key_dim=4"])
    vocab = payload["model"]["tgt_embed.weight"].size(0)
    model = build_model(cfg.model, vocab, vocab, shared_vocab=True)
    save_checkpoint(
        tmp_path / "keys.pt", {**payload, "model": model.state_dict(), "config": OmegaConf.to_yaml(cfg, resolve=True)}
    )
    with pytest.raises(ConfigError, match="model.key_dim=4 .* only key_dim=null models can be exported"):
        export_ctranslate2(str(tmp_path / "keys.pt"), tmp_path / "ct2", "float32")
