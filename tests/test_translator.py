"""The Python API (``from nmt import Translator``): load once, translate strings, n-best, attention, ensembles."""

from __future__ import annotations

import dataclasses
import threading

import pytest
import torch
from conftest import read_pairs

from nmt import Translator, decode_workers
from nmt.checkpoint import load_checkpoint, save_checkpoint
from nmt.errors import ConfigError
from nmt.metrics import corpus_scores
from nmt.models import linear as linear_module
from nmt.models.ensemble import Ensemble
from nmt.translator import check_quantization


def test_translate_returns_strings_in_order(tiny_checkpoint):
    translator = Translator.from_checkpoint(tiny_checkpoint, beam_size=2, device="cpu")
    de, en = read_pairs("train", 12)
    assert translator.search.beam_size == 2
    assert translator.translate([de[3], "", de[0], "   ", de[7]]) == [en[3], "", en[0], "", en[7]]
    assert translator.config["model"]["arch"] == "transformer"


def test_nbest_with_scores_and_attention(tiny_checkpoint):
    translator = Translator.from_checkpoint(tiny_checkpoint, beam_size=4, n_best=3, need_attention=True)
    de, en = read_pairs("train", 6)
    for line, ref, nbest in zip(de, en, translator.translate_nbest(de)):
        assert len(nbest) == 3 and translator.detokenize(nbest[0]) == ref
        assert [h.score for h in nbest] == sorted((h.score for h in nbest), reverse=True)
        src_len = len(translator.src_tok.encode([line])[0]) + 1  # with EOS
        for h in nbest:
            assert h.attention.shape == (len(h.tokens) + 1, src_len)
            torch.testing.assert_close(h.attention.sum(-1), torch.ones(len(h.tokens) + 1))
        record = translator.alignment(translator.src_tok.encode([line])[0], nbest[0])
        assert record["source"][-1] == "</s>" and len(record["source"]) == src_len
        assert len(record["attention"]) == len(record["output"]) == len(nbest[0].tokens) + 1


@pytest.mark.parametrize("beam", [1, 3])
def test_ensemble_of_a_checkpoint_with_itself_equals_that_checkpoint(tiny_checkpoint, beam):
    de, _ = read_pairs("train", 64)
    single = Translator.from_checkpoint(tiny_checkpoint, beam_size=beam, length_penalty=0.6)
    pair = Translator.from_checkpoint([tiny_checkpoint, tiny_checkpoint], beam_size=beam, length_penalty=0.6)
    assert isinstance(pair.model, Ensemble) and len(pair.model.models) == 2
    assert pair.model.max_positions == single.model.max_positions
    ones, twos = single.translate_nbest(de), pair.translate_nbest(de)
    assert [h[0].tokens for h in twos] == [h[0].tokens for h in ones]
    assert [h[0].score for h in twos] == pytest.approx([h[0].score for h in ones], abs=1e-4)


def test_ensemble_of_different_models_averages_their_log_probabilities(tiny_checkpoint, tmp_path):
    """With a perturbed member, the ensemble's next-token distribution is the normalised mean of the two
    members' log-probabilities (a renormalised geometric mean of their distributions)."""
    payload = load_checkpoint(tiny_checkpoint)
    torch.manual_seed(0)
    noisy = {k: v + 0.05 * torch.randn_like(v) if v.is_floating_point() else v for k, v in payload["model"].items()}
    save_checkpoint(tmp_path / "noisy.pt", {**payload, "model": noisy})
    a, b = (Translator.from_checkpoint(p) for p in (tiny_checkpoint, tmp_path / "noisy.pt"))
    pair = Translator.from_checkpoint([tiny_checkpoint, tmp_path / "noisy.pt"])
    src = torch.tensor([a.src_tok.encode(read_pairs("train", 1)[0])[0] + [3]])
    prev = torch.tensor([[2]])

    def logp(t: Translator) -> torch.Tensor:
        memory = t.model.encode(src, torch.tensor([src.size(1)]))
        logits, _, _ = t.model.decode(prev, memory, t.model.init_state(memory))
        return torch.log_softmax(logits.float(), -1)

    with torch.no_grad():
        mean = (logp(a) + logp(b)) / 2
        assert not torch.allclose(logp(a), logp(b), atol=1e-3)
        torch.testing.assert_close(logp(pair), torch.log_softmax(mean, -1))


def test_ensemble_of_checkpoints_with_other_vocabularies_is_refused(tiny_checkpoint, tmp_path):
    payload = load_checkpoint(tiny_checkpoint)
    other = payload["tokenizers"]["src"].clone()
    other[-1] ^= 1  # another sentencepiece model
    save_checkpoint(tmp_path / "other.pt", {**payload, "tokenizers": {"src": other}})
    with pytest.raises(ConfigError, match="must share their vocabularies.*other.pt"):
        Translator.from_checkpoint([tiny_checkpoint, tmp_path / "other.pt"])


@pytest.mark.parametrize("beam", [1, 4])
def test_inter_threads_decode_batches_at_once_with_the_same_outputs_in_order(tiny_checkpoint, beam):
    """Two batches at once, one thread each, give what one thread gives decoding them one by one (the
    same kernels), line for line; PyTorch's thread count and a training model's mode are put back, and no
    dropout runs while decoding even when the model was training (validation)."""
    de, _ = read_pairs("train", 48)
    lines = [*de[:20], "", *de[20:]]
    options = {"beam_size": beam, "length_penalty": 0.6, "max_tokens": 24 * beam}  # many small batches
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone = Translator.from_checkpoint(tiny_checkpoint, **options).translate_nbest(lines)
        torch.set_num_threads(2)
        parallel = Translator.from_checkpoint(tiny_checkpoint, inter_threads=2, **options)
        model = parallel.model
        model.cfg = dataclasses.replace(model.cfg, dropout=0.3)
        for module in model.modules():
            if isinstance(getattr(module, "dropout", None), float):
                module.dropout = 0.3
        model.train()
        seen: list[tuple[str, int]] = []
        decode_batch = parallel.decode_batch

        def spy(src_ids: list[list[int]]):
            seen.append((threading.current_thread().name, torch.get_num_threads()))
            return decode_batch(src_ids)

        parallel.decode_batch = spy
        together = parallel.translate_nbest(lines)
        assert torch.get_num_threads() == 2 and model.training
    finally:
        torch.set_num_threads(threads)
    assert len(seen) > 4 and {n for _, n in seen} == {1}
    assert len({name for name, _ in seen}) == 2 and all(name.startswith("nmt-decode") for name, _ in seen)
    assert [[h.tokens for h in hyps] for hyps in together] == [[h.tokens for h in hyps] for hyps in alone]
    assert [h[0].score for h in together] == [h[0].score for h in alone]
    assert together[20][0].tokens == []


@pytest.mark.parametrize("quantization", ["none", "int8"])
def test_processes_decode_batches_in_workers_with_the_same_outputs_in_order(tiny_checkpoint, quantization):
    """processes=2: two worker processes of one thread each decode the batches and give, line for line
    and score for score, what one thread gives in this process; they decode with the Translator's current
    search settings, are started once for all calls, and stop with close()."""
    de, _ = read_pairs("train", 48)
    lines = [*de[:20], "", *de[20:]]
    options = {"beam_size": 4, "length_penalty": 0.6, "max_tokens": 96, "quantization": quantization}
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone = Translator.from_checkpoint(tiny_checkpoint, **options)
        expected = alone.translate_nbest(lines)
        alone.search = dataclasses.replace(alone.search, beam_size=1)
        expected_greedy = alone.translate_nbest(lines)
        torch.set_num_threads(2)
        workers = Translator.from_checkpoint(tiny_checkpoint, processes=2, **options)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(workers, "decode_batch", None)  # nothing decodes in this process
            together = workers.translate_nbest(lines)
            pool = workers._workers
            workers.search = dataclasses.replace(workers.search, beam_size=1)
            greedy = workers.translate_nbest(lines)
            assert workers._workers is pool and pool is not None
        processes = list(pool._pool._processes.values())
        workers.close()
        assert workers._workers is None and len(processes) == 2 and not any(p.is_alive() for p in processes)
    finally:
        torch.set_num_threads(threads)
    for got, want in ((together, expected), (greedy, expected_greedy)):
        assert [[h.tokens for h in hyps] for hyps in got] == [[h.tokens for h in hyps] for hyps in want]
        assert [h[0].score for h in got] == [h[0].score for h in want]
    assert together[20][0].tokens == []


def test_a_decoding_worker_sets_its_threads_and_allocator(tiny_checkpoint, monkeypatch):
    """A spawned worker starts with glibc's defaults: it sets its threads and keeps freed memory as the
    entry points do (``setup_cpu``; it only set its threads, so its largest tensors page-faulted again
    in every batch: int8 greedy with processes=2 ran 8% slower)."""
    calls = []
    monkeypatch.setattr(decode_workers, "setup_cpu", calls.append)
    monkeypatch.setattr(decode_workers, "_model", None)
    translator = Translator.from_checkpoint(tiny_checkpoint)
    decode_workers._start(translator.model, "none", 1, translator.search)
    assert calls == [1] and decode_workers._model is translator.model


def test_inter_threads_and_processes_must_be_positive_and_not_both(tiny_checkpoint):
    with pytest.raises(ConfigError, match="inter_threads=0: give the number of batches decoded at once"):
        Translator.from_checkpoint(tiny_checkpoint, inter_threads=0)
    with pytest.raises(ConfigError, match="processes=0: give the number of worker processes"):
        Translator.from_checkpoint(tiny_checkpoint, processes=0)
    with pytest.raises(ConfigError, match="processes=2 and inter_threads=2: .* give one of them"):
        Translator.from_checkpoint(tiny_checkpoint, processes=2, inter_threads=2)


@pytest.mark.skipif(not linear_module.ONEDNN, reason="oneDNN's packed linear kernel is used on x86 CPUs only")
def test_a_loaded_translator_packs_its_weights_once_and_follows_a_reload(tiny_checkpoint, tmp_path):
    """A Translator loaded from a checkpoint keeps its oneDNN-packed weights across calls (packing them
    every call cost as much as decoding a short sentence); weights loaded later into the translator's model
    are packed again, and the output follows them."""
    lines, _ = read_pairs("train", 8)
    torch.manual_seed(0)
    translator = Translator.from_checkpoint(tiny_checkpoint, beam_size=2, device="cpu")
    weight = translator.model.decoder_layers[0].ffn.fc1.weight
    first = translator.translate(lines)
    packed = linear_module._KEPT[weight][1]
    assert translator.translate(lines) == first and linear_module._KEPT[weight][1] is packed  # not repacked
    assert weight not in linear_module._PACKED
    payload = load_checkpoint(tiny_checkpoint)
    noisy = {k: v + 0.5 * torch.randn_like(v) if v.is_floating_point() else v for k, v in payload["model"].items()}
    save_checkpoint(tmp_path / "noisy.pt", {**payload, "model": noisy})
    translator.model.load_state_dict(noisy)
    reloaded = Translator.from_checkpoint(tmp_path / "noisy.pt", beam_size=2)
    assert translator.translate(lines) == reloaded.translate(lines) != first
    assert linear_module._KEPT[weight][1] is not packed


def test_int8_translator_keeps_the_memorised_translations(tiny_checkpoint):
    """quantization=int8 (linear layers in int8 on a CPU) still translates the 64 memorised pairs, a
    sentence decodes alone as inside its batch, and quantization names its choices and its device."""
    de, en = read_pairs("train", 64)
    int8 = Translator.from_checkpoint(tiny_checkpoint, beam_size=4, device="cpu", quantization="int8")
    outputs = int8.translate(de)
    assert corpus_scores(outputs, en).bleu > 90
    assert [int8.translate([line])[0] for line in de[:8]] == outputs[:8]
    with pytest.raises(ConfigError, match="quantization=int4: give one of none, int8"):
        Translator.from_checkpoint(tiny_checkpoint, quantization="int4")
    with pytest.raises(ConfigError, match="quantization=int8 decodes on a CPU"):
        check_quantization("int8", torch.device("cuda"))
