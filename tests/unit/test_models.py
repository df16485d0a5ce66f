"""Model-level checks: the papers' score functions against direct formulas, incremental decoding,
typed memory / state, the papers' initialisations, and config validation (the loss, schedules and
dropout have their own files)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from conftest import TINY, model_cfg

from nmt.data.batching import pad_sequences
from nmt.errors import ConfigError
from nmt.models import Seq2SeqModel, build_model, select_rows
from nmt.models.attention import AdditiveAttention, LuongAttention
from nmt.models.rnn_encoder import LSTM, reverse_padded, run_gru, run_packed
from nmt.models.transformer import LayerCache

torch.manual_seed(0)

SEQS = [[5, 6, 7, 8, 9, 10, 11, 12], [13, 14, 15, 16], [17, 18]]


def _batch():
    src = pad_sequences(SEQS, suffix=3)
    return src, torch.tensor([len(s) + 1 for s in SEQS])


def test_additive_score_is_bahdanau_eq6():
    att = AdditiveAttention(query_dim=5, key_dim=6, attn_dim=4)
    s_prev, h = torch.randn(2, 5), torch.randn(2, 3, 6)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    ctx, alpha = att(s_prev, att.project_keys(h), h, mask)
    for b in range(2):
        e = torch.stack(
            [
                att.v_a.weight[0] @ torch.tanh(att.W_a.weight @ s_prev[b] + att.U_a.weight @ h[b, j] + att.U_a.bias)
                for j in range(3)
            ]
        )
        e[~mask[b]] = -math.inf
        a = torch.softmax(e, 0)
        torch.testing.assert_close(alpha[b], a)
        torch.testing.assert_close(ctx[b], (a[:, None] * h[b]).sum(0))
    assert alpha[1, 2] == 0


@pytest.mark.parametrize("score", ["dot", "general", "concat", "location"])
def test_luong_global_scores_are_eq8(score):
    att = LuongAttention(hidden=6, score=score, kind="global", window=2, max_src_len=8)
    h_t, h_s = torch.randn(1, 1, 6), torch.randn(1, 4, 6)
    mask, lengths = torch.ones(1, 4, dtype=torch.bool), torch.tensor([4])
    ctx, a = att(h_t, att.project_keys(h_s), h_s, mask, lengths, torch.tensor([0]))
    ht, hs = h_t[0, 0], h_s[0]
    if score == "dot":
        e = hs @ ht
    elif score == "general":
        e = torch.stack([ht @ (att.W_a.weight @ hs[s]) for s in range(4)])
    elif score == "concat":
        c = att.concat
        e = torch.stack(
            [c.v_a.weight[0] @ torch.tanh(c.W_a.weight @ ht + c.U_a.weight @ hs[s] + c.U_a.bias) for s in range(4)]
        )
    else:
        e = (att.W_loc.weight @ ht + att.W_loc.bias)[:4]
    torch.testing.assert_close(a[0, 0], torch.softmax(e, 0))
    torch.testing.assert_close(ctx[0, 0], (torch.softmax(e, 0)[:, None] * hs).sum(0))


def test_luong_local_p_is_eq9_eq10_and_zero_outside_window():
    D = 2
    att = LuongAttention(hidden=6, score="general", kind="local_p", window=D, max_src_len=16)
    h_t, h_s = torch.randn(2, 3, 6), torch.randn(2, 12, 6)
    lengths = torch.tensor([12, 7])
    mask = torch.arange(12)[None] < lengths[:, None]
    a, p_t = att.weights(h_t, att.project_keys(h_s), mask, lengths, torch.arange(3))
    for b in range(2):
        for t in range(3):
            S = int(lengths[b])
            p = S * torch.sigmoid(att.v_p.weight[0] @ torch.tanh(att.W_p.weight @ h_t[b, t]))
            torch.testing.assert_close(p_t[b, t], p)
            s = torch.arange(12, dtype=torch.float)
            inside = ((s - p).abs() <= D) & mask[b]
            assert torch.all(a[b, t][~inside] == 0)
            e = h_t[b, t] @ att.W_a(h_s[b]).T
            align = torch.softmax(e.masked_fill(~inside, -math.inf), 0)
            torch.testing.assert_close(a[b, t], align * torch.exp(-((s - p) ** 2) / (2 * (D / 2) ** 2)))


def test_lstm_runs_in_fp32_under_cpu_autocast():
    """trainer.amp=bf16 with an LSTM model failed on AVX2 CPUs (oneDNN has no bf16 LSTM kernel there:
    "could not create a primitive descriptor"); the LSTM now runs in fp32 under CPU autocast on every
    CPU kind, so its outputs equal the fp32 run's even when its inputs and state arrive in bf16."""
    torch.manual_seed(0)
    lstm = LSTM(6, 5, 2, batch_first=True)
    x, lengths = torch.randn(3, 4, 6).bfloat16(), torch.tensor([4, 2, 3])
    hx = (torch.randn(2, 3, 5).bfloat16(), torch.randn(2, 3, 5).bfloat16())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, (h, c) = lstm(x, hx)
        packed_out, packed_final = run_packed(lstm, x, lengths)
    ref_out, (ref_h, ref_c) = lstm(x.float(), (hx[0].float(), hx[1].float()))
    assert out.dtype == h.dtype == c.dtype == torch.float32
    assert torch.equal(out, ref_out) and torch.equal(h, ref_h) and torch.equal(c, ref_c)
    ref_packed_out, ref_packed_final = run_packed(lstm, x.float(), lengths)
    assert torch.equal(packed_out, ref_packed_out) and torch.equal(packed_final[0], ref_packed_final[0])


@pytest.mark.parametrize("bidirectional", [True, False])
def test_gru_over_padded_rows_equals_packed_run(bidirectional):
    """While training, run_gru runs each direction over the padded rows (the packed run's backward is
    quadratic in the length): outputs, final states and every gradient equal the packed run's, padding
    positions included (zero outputs, no gradient), with lengths from 1 to the full width."""
    torch.manual_seed(0)
    gru = torch.nn.GRU(6, 5, batch_first=True, bidirectional=bidirectional).double()
    x = torch.randn(4, 7, 6, dtype=torch.double, requires_grad=True)
    lengths = torch.tensor([7, 1, 4, 6])
    w = torch.randn(4, 7, 5 * (2 if bidirectional else 1), dtype=torch.double)
    runs = []
    for run in (run_packed, run_gru):
        out, final = run(gru, x, lengths)
        grads = torch.autograd.grad((out * w).sum() + final.pow(2).sum(), [x, *gru.parameters()])
        runs.append((out, final, grads))
    (ref_out, ref_final, ref_grads), (out, final, grads) = runs
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(final, ref_final)
    for g, ref in zip(grads, ref_grads):
        torch.testing.assert_close(g, ref)
    assert torch.all(out[1, 1:] == 0) and torch.all(grads[0][1, 1:] == 0)
    with torch.no_grad():  # decoding: the packed run
        torch.testing.assert_close(run_gru(gru, x, lengths)[0], ref_out)


def test_reverse_keeps_eos_and_padding():
    src, lengths = _batch()
    rev = reverse_padded(src, lengths)
    assert rev[1].tolist() == [16, 15, 14, 13, 3, 0, 0, 0, 0]
    assert torch.equal(reverse_padded(rev, lengths), src)


@pytest.mark.parametrize("name", list(TINY))
def test_incremental_decoding_matches_teacher_forcing(name):
    model = build_model(TINY[name], 40, 40, shared_vocab=True).eval()
    src, lengths = _batch()
    tgt = torch.randint(4, 40, (3, 6))
    full, att = model(src, lengths, tgt, need_attention=True)
    memory = model.encode(src, lengths)
    state, steps = model.init_state(memory), []
    for t in range(6):
        logits, state, _ = model.decode(tgt[:, t : t + 1], memory, state)
        steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-4, atol=1e-5)
    assert att.shape == (3, 6, src.size(1))
    assert torch.all(att[2, :, 3:] == 0)


def test_linear_layers_are_plain_nn_linear_under_their_checkpoint_names():
    """Every projection is a plain ``nn.Linear`` (no custom kernels), under the parameter names that
    checkpoints written before hold, and the feed-forward is fc2(relu(fc1(x)))."""
    for name in ("transformer", "rnnsearch", "luong"):
        model = build_model(TINY[name], 40, 40, shared_vocab=True)
        linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        assert linears and all(type(m) is torch.nn.Linear for m in linears)
    model = build_model(TINY["transformer"], 40, 40, shared_vocab=True).eval()
    keys = set(model.state_dict())
    names = {
        "encoder_layers.0.ffn.fc1.weight",
        "encoder_layers.0.ffn.fc2.bias",
        "decoder_layers.1.cross_attn.kv_proj.bias",
    }
    assert names <= keys, sorted(keys)
    ffn = model.encoder_layers[0].ffn
    x = torch.randn(2, 3, 32)
    expected = torch.nn.functional.linear(torch.relu(ffn.fc1(x)), ffn.fc2.weight, ffn.fc2.bias)
    assert torch.equal(ffn(x), expected)


@pytest.mark.parametrize("name", ["rnnsearch", "rnnencdec"])
def test_gru_decoder_is_the_papers_recurrence_with_nn_grucell(name):
    """The GRU decoder computes the gates' step-independent share out of its loop (nmt/models/rnnsearch.py);
    it must still be s_i = GRUCell([E y_{i-1}; c_i], s_{i-1}) followed by the deep output, step by step."""
    model = build_model({**TINY[name], "dropout": 0.0}, 40, 40, shared_vocab=True).eval()
    src, lengths = _batch()
    tgt = torch.randint(4, 40, (3, 5))
    with torch.no_grad():
        for p in model.parameters():  # away from the paper's near-zero start, where every gate is ~0.5
            p.normal_(0.0, 0.5)
        memory = model.encode(src, lengths)
        logits, state, _ = model.decode(tgt, memory, model.init_state(memory))
        s, expected = memory.s0, []
        for i in range(tgt.size(1)):
            c = memory.c if name == "rnnencdec" else model.attention(s, memory.keys, memory.states, memory.mask)[0]
            emb = model.tgt_embed(tgt[:, i])
            s = model.cell(torch.cat([emb, c], dim=-1), s)
            expected.append(model.deep_output(s[:, None], emb[:, None], c[:, None]))
    torch.testing.assert_close(logits, torch.cat(expected, 1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(state.s, s, rtol=1e-4, atol=1e-5)


def _leaves(obj: object, path: str = "") -> list[tuple[str, object]]:
    """Every tensor or plain value inside a memory / state, by its path through dataclasses, lists and tuples;
    a self-attention cache with a deferred reorder as the rows it stands for."""
    if isinstance(obj, LayerCache) and obj.rows is not None:
        obj = LayerCache(*(x.index_select(0, obj.rows) for x in (obj.k, obj.v)))
    if dataclasses.is_dataclass(obj):
        return [leaf for f in dataclasses.fields(obj) for leaf in _leaves(getattr(obj, f.name), f"{path}.{f.name}")]
    if isinstance(obj, list | tuple):
        return [leaf for i, v in enumerate(obj) for leaf in _leaves(v, f"{path}[{i}]")]
    return [(path, obj)]


@pytest.mark.parametrize("name", list(TINY))
def test_select_rows_reorders_every_tensor_of_memory_and_state(name):
    """Beam search relies on this without knowing the architecture: every tensor field (also inside the
    Transformer's per-layer caches) is batch-first and gets reordered, plain values like the step stay."""
    model = build_model(TINY[name], 40, 40, shared_vocab=True).eval()
    src, lengths = _batch()
    memory = model.encode(src, lengths)
    state = initial = model.init_state(memory)
    for t in range(2):
        _, state, _ = model.decode(torch.full((3, 1), 5 + t), memory, state)
    index = torch.tensor([2, 0, 2, 1])  # reorders and repeats rows, as beam search does
    for obj in (memory, initial, state):
        picked = select_rows(obj, index)
        assert type(picked) is type(obj)
        before, after = _leaves(obj), _leaves(picked)
        assert [path for path, _ in after] == [path for path, _ in before]
        for (path, old), (_, new) in zip(before, after):
            if isinstance(old, torch.Tensor):
                assert old.size(0) == 3 and torch.equal(new, old[index]), path
            else:
                assert new == old, path
    assert any(isinstance(v, torch.Tensor) for _, v in _leaves(state))
    if name.startswith(("transformer", "luong")):
        assert select_rows(state, index).step == state.step == 2


@pytest.mark.parametrize("name", list(TINY))
@torch.no_grad()  # as in search: the Transformer cache's one-copy extension is for inference
def test_the_step_after_select_rows_is_the_reordered_step(name):
    """Beam search reorders the state, then decodes the next token from it: the result must be the
    original rows' next step, reordered, also after two selections in a row (greedy search drops rows
    between steps, beam search reorders at every step; the Transformer's cache defers both to its next
    step, which copies the selected rows straight into the extended cache)."""
    model = build_model(TINY[name], 40, 40, shared_vocab=True).eval()
    src, lengths = _batch()
    memory = model.encode(src, lengths)
    state = model.init_state(memory)
    for t in range(3):
        _, state, _ = model.decode(torch.full((3, 1), 5 + t), memory, state)
    first, then = torch.tensor([2, 0, 1, 2]), torch.tensor([3, 1, 1, 0, 2])  # together: rows 2, 0, 0, 2, 1
    index = first[then]
    step = torch.tensor([[7], [8], [9]])
    logits, after, _ = model.decode(step, memory, state)
    picked = select_rows(select_rows(state, first), then)
    logits_picked, after_picked, _ = model.decode(step[index], select_rows(memory, index), picked)
    torch.testing.assert_close(logits_picked, logits[index])
    logits, _, _ = model.decode(step + 1, memory, after)
    logits_picked, _, _ = model.decode(step[index] + 1, select_rows(memory, index), after_picked)
    torch.testing.assert_close(logits_picked, logits[index])


def test_model_dim_must_be_set():
    """The Noam schedule scales with model_dim; a model that did not set it used to inherit 512 silently."""

    class Forgetful(Seq2SeqModel):
        def encode(self, src, src_lengths): ...

        def init_state(self, memory): ...

        def decode(self, prev_tokens, memory, state, need_attention=False): ...

    with pytest.raises(TypeError, match="model_dim"):
        Forgetful()
    dims = {"transformer": 32, "rnnsearch": 24, "rnnencdec": 24, "luong": 24}
    assert {name: build_model(TINY[name], 40, 40, shared_vocab=True).model_dim for name in dims} == dims


def test_inapplicable_option_is_refused():
    cfg = {**TINY["transformer"], "attention": {"kind": "local_p"}}
    with pytest.raises(ConfigError, match="attention.*do not apply.*valid options"):
        build_model(cfg, 40, 40, shared_vocab=True)
    with pytest.raises(ConfigError, match="not a registered model.*luong.*transformer"):
        build_model({"arch": "lstm"}, 40, 40, shared_vocab=True)
    with pytest.raises(ConfigError, match="joint vocabulary"):
        build_model(TINY["transformer"], 40, 50, shared_vocab=False)


@pytest.mark.parametrize("arch", ["rnnsearch", "rnnencdec"])
def test_bahdanau_initialisation_is_appendix_b1(arch):
    """Recurrent matrices orthogonal (per gate), W_a / U_a ~ N(0, 0.001^2), v_a and biases 0, the rest
    (embeddings included) ~ N(0, 0.01^2)."""
    torch.manual_seed(0)
    sizes = {
        "embed_dim": 48,
        "hidden_dim": 64,
        "maxout_dim": 32,
        **({"attention_dim": 64} if arch == "rnnsearch" else {}),
    }
    model = build_model(model_cfg(arch, **sizes), 500, 500, shared_vocab=False)
    for name, p in model.named_parameters():
        p, leaf = p.detach(), name.rsplit(".", 1)[-1]
        if leaf.startswith("bias") or name.endswith("v_a.weight"):
            assert torch.all(p == 0), name
        elif leaf.startswith("weight_hh"):
            for block in p.split(64, dim=0):
                torch.testing.assert_close(block.T @ block, torch.eye(64), atol=1e-4, rtol=0, msg=name)
        else:
            rows = p[1:] if "embed" in name else p  # the padding row is 0
            expected = 0.001 if name.startswith("attention.") else 0.01
            assert abs(float(rows.std()) / expected - 1) < 0.1 and abs(float(rows.mean())) < expected / 10, name
            if "embed" in name:
                assert torch.all(p[0] == 0), name
    assert build_model(model_cfg(arch, **sizes, init="pytorch"), 500, 500, False).W_o.bias.abs().sum() > 0


def test_luong_initialisation_is_uniform_everywhere():
    """Luong et al. Sec. 4.1: every parameter, embeddings included, uniform in [-0.1, 0.1]."""
    torch.manual_seed(0)
    model = build_model(model_cfg("luong", embed_dim=48, hidden_dim=64, layers=2), 500, 500, False)
    for name, p in model.named_parameters():
        values = p.detach()[1:] if "embed" in name else p.detach()
        assert float(values.abs().max()) <= 0.1, name
        assert abs(float(values.std()) / (0.1 / math.sqrt(3)) - 1) < 0.15, name  # std of U(-0.1, 0.1)


def test_every_option_comes_from_the_yaml_and_a_missing_one_is_named():
    """The model dataclasses hold no defaults (the YAML is the one place), so leaving one out fails loudly."""
    cfg = dict(TINY["rnnsearch"])
    del cfg["attention_dim"]
    with pytest.raises(ConfigError, match=r"model \(rnnsearch\): option\(s\) attention_dim missing"):
        build_model(cfg, 40, 40, shared_vocab=True)


def test_retired_options_of_old_checkpoints_are_dropped():
    """rnnencdec configs written before it had its own config carried an unused attention_dim."""
    model = build_model({**TINY["rnnencdec"], "attention_dim": 256}, 40, 40, shared_vocab=True)
    assert not hasattr(model.cfg, "attention_dim")
    with pytest.raises(ConfigError, match="attention_dim do not apply"):
        build_model({**TINY["transformer"], "attention_dim": 256}, 40, 40, shared_vocab=True)


def test_every_model_config_describes_itself():
    from nmt.models import model_config

    described = {name: model_config(cfg)[1].describe() for name, cfg in TINY.items()}
    assert described["transformer"] == "Transformer 2+2 layers, d 32"
    assert described["rnnsearch"] == "bi-GRU 24, additive attention"
    assert described["rnnencdec"] == "GRU 24, no attention"
    assert described["luong"] == "LSTM 2 layers, local_p concat, input feeding"


def test_learned_positions_are_trained_tables_per_side():
    model = build_model(TINY["transformer-learned-positions"], 40, 40, shared_vocab=True)
    assert model.position_table("src") is model.src_positions.weight
    assert model.position_table("tgt") is model.tgt_positions.weight
    assert model.src_positions.weight.requires_grad
    sinusoidal = build_model(TINY["transformer"], 40, 40, shared_vocab=True)
    assert sinusoidal.src_positions is None and sinusoidal.position_table("tgt") is sinusoidal.positions
    with pytest.raises(ConfigError, match="model.positions='rotary': use sinusoidal or learned"):
        build_model({**TINY["transformer"], "positions": "rotary"}, 40, 40, shared_vocab=True)


def test_key_dim_narrows_queries_and_keys_only():
    """Table 3 row B: d_k smaller than d_model / h, values still d_model / h, scores scaled by 1 / sqrt(d_k)."""
    model = build_model(TINY["transformer-small-keys"], 40, 40, shared_vocab=True).eval()
    attn = model.decoder_layers[0].cross_attn
    assert (attn.key_dim, attn.value_dim) == (4, 8)
    assert attn.q_proj.weight.shape == (16, 32) and attn.kv_proj.weight.shape == (16 + 32, 32)
    x, memory = torch.randn(2, 3, 32), torch.randn(2, 5, 32)
    k, v = attn.keys_values(memory)
    assert k.shape == (2, 4, 5, 4) and v.shape == (2, 4, 5, 8)
    mask = torch.tensor([True] * 5 + [True] * 3 + [False] * 2).view(2, 1, 1, 5)
    fused, _ = attn(x, k, v, mask, causal=False)  # scaled_dot_product_attention
    explicit, weights = attn(x, k, v, mask, causal=False, need_weights=True)
    q = attn.q_proj(x).view(2, 3, 4, 4).transpose(1, 2)
    probs = (q @ k.transpose(-1, -2) / 2.0).masked_fill(~mask, float("-inf")).softmax(-1)  # sqrt(d_k) = 2
    direct = attn.out_proj((probs @ v).transpose(1, 2).reshape(2, 3, 32))
    torch.testing.assert_close(fused, direct)
    torch.testing.assert_close(explicit, direct)
    torch.testing.assert_close(weights, probs.mean(1))
    assert torch.all(weights[1, :, 3:] == 0)


def test_default_key_dim_keeps_the_checkpoint_layout():
    """key_dim=null is d_model / h: the parameter shapes of checkpoints saved before the option existed."""
    plain = build_model(TINY["transformer"], 40, 40, shared_vocab=True)
    old_cfg = {k: v for k, v in TINY["transformer"].items() if k != "key_dim"}
    old = build_model(old_cfg, 40, 40, shared_vocab=True)
    assert {k: v.shape for k, v in plain.state_dict().items()} == {k: v.shape for k, v in old.state_dict().items()}
    assert plain.decoder_layers[0].self_attn.kv_proj.weight.shape == (64, 32)
    with pytest.raises(ConfigError, match="model.key_dim=0"):
        build_model({**TINY["transformer"], "key_dim": 0}, 40, 40, shared_vocab=True)


def test_luong_bidirectional_encoder_reads_both_ways():
    """encoder=bidirectional (OpenNMT's brnn, beyond the paper): every source state depends on the words
    after it too; the paper's unidirectional encoder (no reversal) depends only on the words before."""
    src, lengths = _batch()
    changed = src.clone()
    changed[0, 6] = 30  # a late word of the first sentence
    for name, sees_later in (("luong-brnn", True), ("luong-nofeed", False)):
        cfg = {**TINY[name], "reverse_source": False}
        model = build_model(cfg, 40, 40, shared_vocab=True).eval()
        before, after = model.encode(src, lengths), model.encode(changed, lengths)
        assert before.states.shape == (3, src.size(1), 24) and before.h0.shape == (3, 2, 24)
        assert (not torch.equal(before.states[0, :6], after.states[0, :6])) is sees_later, name
    with pytest.raises(ConfigError, match="model.encoder='both'"):
        build_model({**TINY["luong"], "encoder": "both"}, 40, 40, shared_vocab=True)
    with pytest.raises(ConfigError, match="hidden_dim=25 in two"):
        build_model({**TINY["luong-brnn"], "hidden_dim": 25}, 40, 40, shared_vocab=True)
