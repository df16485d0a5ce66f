"""The typed data config: every data YAML and experiment composes into it with its interpolations resolved,
an unknown, mistyped or unset option is a ConfigError naming it, and the data config an old checkpoint
saved (before later options existed) still loads for nmt-evaluate and nmt-translate."""

from __future__ import annotations

import dataclasses
import shutil
import typing

import pytest
import yaml
from conftest import compose_train, is_comparison
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from nmt.data.config import DataConfig, TokenizerConfig
from nmt.data.corpus import split_names
from nmt.data.pretokenize import PRETOKENIZERS
from nmt.data.tokenizer import moses_languages
from nmt.errors import ConfigError
from nmt.paths import CONFIG_DIR
from nmt.training.run_config import ADDED_OPTIONS, data_config_for

DATASETS = sorted(p.stem for p in (CONFIG_DIR / "data").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml") if not is_comparison(p.stem))
CUSTOM = ["data.root=/corpus", "data.src_lang=xx", "data.tgt_lang=yy"]  # what configs/data/custom.yaml leaves open


def _data(name: str, *overrides: str):
    return compose_train([f"data={name}", *(CUSTOM if name == "custom" else []), *overrides]).data


def _as_dict(typed) -> dict:
    return yaml.safe_load(yaml.safe_dump(dataclasses.asdict(typed)))


@pytest.mark.parametrize("name", DATASETS)
def test_every_data_yaml_is_the_typed_config_with_the_same_values(name):
    section = _data(name)
    typed = DataConfig.from_cfg(section)
    assert _as_dict(typed) == OmegaConf.to_container(section, resolve=True)
    assert "${" not in typed.root + typed.cache_dir and typed.cache_dir.endswith(typed.name)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_has_a_valid_data_config(experiment):
    DataConfig.from_cfg(compose_train([f"experiment={experiment}"]).data)


def test_the_options_custom_leaves_open_are_named_when_unset():
    with pytest.raises(ConfigError, match=r"data.src_lang, data.tgt_lang, data.root: required \(\?\?\? in the config"):
        DataConfig.from_cfg(compose_train(["data=custom"]).data)


def test_an_unknown_option_is_named_with_the_valid_ones():
    with pytest.raises(ConfigError, match=r"data.max_length: no such option; valid options of data: .*max_len"):
        DataConfig.from_cfg(_data("multi30k_de_en", "+data.max_length=50"))
    with pytest.raises(ConfigError, match=r"data.tokenizer.vocab: no such option; .*data.tokenizer: .*vocab_size"):
        DataConfig.from_cfg(_data("multi30k_de_en", "+data.tokenizer.vocab=50"))


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.max_len=long", "data.max_len='long': expected a whole number"),
        ("data.max_words=1.5", "data.max_words=1.5: expected a whole number"),
        ("data.tokenizer.joint=2", "data.tokenizer.joint=2: expected true or false"),
        ("data.test_splits=test2016", "data.test_splits='test2016': expected a list of strings"),
        ("data.splits.train=3", "data.splits.train=3: expected a string"),
        ("data.source=web", "data.source='web': use auto, local, hub"),
        ("data.tokenizer.model_type=wordpiece", "data.tokenizer.model_type='wordpiece': use unigram, bpe"),
        ("data.tokenizer.pretokenize=spacy", "data.tokenizer.pretokenize='spacy': use none, moses"),
        ("data.max_len=0", "data.max_len=0: must be at least 1"),
    ],
)
def test_a_wrong_type_or_value_is_named(override, message):
    with pytest.raises(ConfigError, match=message):
        DataConfig.from_cfg(_data("multi30k_de_en", override))


def test_the_data_functions_take_the_hydra_section_or_the_typed_config():
    section = _data("multi30k_de_en")
    assert split_names(section) == split_names(DataConfig.from_cfg(section))
    assert moses_languages(_data("multi30k_de_en", "data.tokenizer.pretokenize=moses")) == ("de", "en")
    with pytest.raises(ConfigError, match="data.max_len='x'"):
        split_names(_data("multi30k_de_en", "data.max_len=x"))


def test_added_options_default_to_what_their_absence_computed():
    """The defaults of the typed config and the comparisons' ADDED_OPTIONS agree; pretokenize's choices
    are the pretokenizers."""
    defaults = {f.name: f.default for f in dataclasses.fields(DataConfig) if f.default is not dataclasses.MISSING}
    assert ADDED_OPTIONS["data"].items() <= defaults.items()
    assert set(defaults) == {"max_words", "num_proc"}
    assert set(typing.get_args(typing.get_type_hints(TokenizerConfig)["pretokenize"])) == set(PRETOKENIZERS)


def test_a_data_config_saved_by_the_first_version_still_loads():
    """A checkpoint saves its config as resolved YAML; the first version's had no max_words, num_proc or
    tokenizer.pretokenize. nmt-evaluate points it at this machine's data root; nmt-translate reads its
    Moses stage (none)."""
    now = compose_train(["data=multi30k_de_en"])
    saved = yaml.safe_load(OmegaConf.to_yaml(now, resolve=True))
    assert DataConfig.from_cfg(saved["data"]) == DataConfig.from_cfg(now.data)
    for key in ("max_words", "num_proc"):
        del saved["data"][key]
    del saved["data"]["tokenizer"]["pretokenize"]
    saved["data"]["source"] = "local"  # the first version's only source
    old = data_config_for(saved, "/elsewhere/data")
    assert (old.max_words, old.num_proc, old.tokenizer.pretokenize, old.root) == (None, None, "none", "/elsewhere/data")
    assert moses_languages(saved["data"]) == (None, None)
    assert dataclasses.replace(old, root=now.data.root, source="auto") == DataConfig.from_cfg(now.data)


def test_the_readmes_language_pair_example_is_a_valid_data_config(tmp_path):
    """The README's "Adding a language pair" config, saved as the user would save it, composes into the typed
    data config with the values it sets and custom.yaml's defaults for the rest."""
    readme = (CONFIG_DIR.parent / "README.md").read_text()
    example = readme.split("# configs/data/news_en_zh.yaml\n")[1].split("```")[0]
    configs = tmp_path / "configs"
    shutil.copytree(CONFIG_DIR, configs)
    (configs / "data" / "news_en_zh.yaml").write_text(example)
    with initialize_config_dir(str(configs), version_base="1.3"):
        typed = DataConfig.from_cfg(compose("train", overrides=["data=news_en_zh"]).data)
    assert (typed.name, typed.src_lang, typed.tgt_lang, typed.source) == ("news_en_zh", "en", "zh", "auto")
    assert typed.hub.path == "wmt/wmt19" and typed.hub.splits == {"train": "train", "valid": "validation"}
    assert not typed.test_splits and typed.tokenizer.character_coverage == 0.9995
    assert typed.max_len == _data("custom").max_len
