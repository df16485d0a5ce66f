"""A Transformer checkpoint as a CTranslate2 model directory (``nmt-export``).

    nmt-export checkpoint=runs/quickstart/best.pt output=exported/quickstart quantization=int8

CTranslate2 is the inference engine OpenNMT and fairseq users deploy with (fast CPU decoding, int8 / int16
quantisation). The model is described through ``ctranslate2.specs.TransformerSpec`` by a ``Converter``
subclass, so CTranslate2's own validation, quantisation and file format apply:

- post-norm (the paper's) or pre-norm layers, with the final encoder / decoder LayerNorm of pre-norm;
- embeddings multiplied by sqrt(d_model), shared or separate, output projection tied or not;
- our own position table, passed explicitly (CTranslate2's built-in sinusoids have another layout and
  start at another position), or the learned one of ``model.positions=learned``;
- self-attention Q, K, V fused in that order; cross-attention Q apart, K and V fused.

The directory also holds the sentencepiece model(s) and the run's config (``nmt_config.yaml``). RNN
checkpoints are refused: CTranslate2 has no RNN decoder. Requires ``pip install ctranslate2``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from nmt.data.tokenizer import shared_vocabulary
from nmt.decoding.ctranslate2_translator import CONFIG_FILE, SOURCE_SPM, TARGET_SPM
from nmt.decoding.translator import Translator
from nmt.errors import ConfigError
from nmt.models.transformer import MultiHeadAttention, Transformer

QUANTIZATIONS = ("float32", "int8", "int16", "int8_float32", "float16", "int8_float16", "bfloat16")


def _array(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def _linear(spec: Any, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    spec.weight = _array(weight)
    if bias is not None:
        spec.bias = _array(bias)


def _layer_norm(spec: Any, norm: nn.LayerNorm) -> None:
    spec.gamma, spec.beta = _array(norm.weight), _array(norm.bias)


def _fused_self_attention(spec: Any, attn: MultiHeadAttention) -> None:
    """CTranslate2's self-attention: one (3d, d) projection, Q then K then V; our kv_proj holds K then V."""
    _linear(
        spec.linear[0],
        torch.cat([attn.q_proj.weight, attn.kv_proj.weight]),
        torch.cat([attn.q_proj.bias, attn.kv_proj.bias]),
    )
    _linear(spec.linear[1], attn.out_proj.weight, attn.out_proj.bias)


def _feed_forward(spec: Any, layer: nn.Module) -> None:
    _linear(spec.linear_0, layer.ffn.fc1.weight, layer.ffn.fc1.bias)
    _linear(spec.linear_1, layer.ffn.fc2.weight, layer.ffn.fc2.bias)
    _layer_norm(spec.layer_norm, layer.res_ffn.norm)


def transformer_spec(model: Transformer, src_pieces: list[str], tgt_pieces: list[str]):
    """The ``ctranslate2.specs.TransformerSpec`` of a trained Transformer, weights filled in."""
    from ctranslate2.specs import transformer_spec as ts

    cfg = model.cfg
    spec = ts.TransformerSpec.from_config((cfg.encoder_layers, cfg.decoder_layers), cfg.heads, pre_norm=cfg.pre_norm)
    encoder, decoder = spec.encoder, spec.decoder
    encoder.embeddings[0].weight = _array(model.src_embed.weight)
    decoder.embeddings.weight = _array(model.tgt_embed.weight)
    encoder.scale_embeddings = decoder.scale_embeddings = True  # x sqrt(d_model), Sec. 3.4
    encoder.position_encodings.encodings = _array(model.position_table("src"))  # sinusoids or learned
    decoder.position_encodings.encodings = _array(model.position_table("tgt"))
    for layer, s in zip(model.encoder_layers, encoder.layer):
        _fused_self_attention(s.self_attention, layer.attn)
        _layer_norm(s.self_attention.layer_norm, layer.res_attn.norm)
        _feed_forward(s.ffn, layer)
    for layer, s in zip(model.decoder_layers, decoder.layer):
        _fused_self_attention(s.self_attention, layer.self_attn)
        _layer_norm(s.self_attention.layer_norm, layer.res_self.norm)
        cross = layer.cross_attn
        _linear(s.attention.linear[0], cross.q_proj.weight, cross.q_proj.bias)
        _linear(s.attention.linear[1], cross.kv_proj.weight, cross.kv_proj.bias)
        _linear(s.attention.linear[2], cross.out_proj.weight, cross.out_proj.bias)
        _layer_norm(s.attention.layer_norm, layer.res_cross.norm)
        _feed_forward(s.ffn, layer)
    if cfg.pre_norm:
        _layer_norm(encoder.layer_norm, model.encoder_norm)
        _layer_norm(decoder.layer_norm, model.decoder_norm)
    projection = model.tgt_embed.weight if model.output_proj is None else model.output_proj.weight
    _linear(decoder.projection, projection, torch.zeros(projection.size(0)))
    spec.register_source_vocabulary(src_pieces)
    spec.register_target_vocabulary(tgt_pieces)
    spec.config.unk_token, spec.config.bos_token, spec.config.eos_token = "<unk>", "<s>", "</s>"
    return spec


def _converter_class():
    from ctranslate2.converters import Converter

    class NmtTransformerConverter(Converter):
        """CTranslate2 converter for an nmt Transformer held by a :class:`Translator`."""

        def __init__(self, translator: Translator):
            self.translator = translator

        def _load(self):
            t = self.translator
            pieces = [[tok.sp.id_to_piece(i) for i in range(len(tok))] for tok in (t.src_tok, t.tgt_tok)]
            return transformer_spec(t.model, *pieces)

    return NmtTransformerConverter


def export_ctranslate2(checkpoint: str, output: str | Path, quantization: str = "float32") -> Path:
    """Write the CTranslate2 directory for ``checkpoint``: the model, the sentencepiece model(s), the config."""
    if quantization not in QUANTIZATIONS:
        raise ConfigError(f"quantization={quantization}: use one of {', '.join(QUANTIZATIONS)}")
    translator = Translator.from_checkpoint(checkpoint, device="cpu")
    cfg = translator.config
    if not isinstance(translator.model, Transformer):
        raise ConfigError(
            f"{checkpoint} holds a {cfg['model']['arch']} model: CTranslate2 has no RNN decoder, "
            "so only Transformer checkpoints can be exported"
        )
    attention = translator.model.decoder_layers[0].self_attn
    if attention.key_dim != attention.value_dim:
        raise ConfigError(
            f"{checkpoint} has model.key_dim={attention.key_dim} (values {attention.value_dim} per head): "
            "CTranslate2's attention needs keys as wide as values, so only key_dim=null models can be exported"
        )
    try:
        converter = _converter_class()(translator)
    except ImportError:
        raise ConfigError("nmt-export needs CTranslate2: pip install ctranslate2") from None
    output = Path(output)
    converter.convert(str(output), quantization=quantization, force=True)
    (output / SOURCE_SPM).write_bytes(translator.src_tok.model_proto)
    if not shared_vocabulary(translator.src_tok, translator.tgt_tok):
        (output / TARGET_SPM).write_bytes(translator.tgt_tok.model_proto)
    (output / CONFIG_FILE).write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return output
