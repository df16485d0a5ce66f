"""Moses tokenization (sacremoses) before a word-level vocabulary, and detokenization of the output.

The RNN papers built 30k / 50k *word* shortlists on Moses-tokenized text (Bahdanau et al. 2014; Luong et
al. 2015). A sentencepiece ``word`` model splits on spaces only, so without this stage ``Haus,`` and
``Haus.`` would be two rare words and ``data.max_len`` would count the wrong units. With
``data.tokenizer.pretokenize: moses`` every text is Moses-tokenized before sentencepiece sees it, and
hypotheses are detokenized again before sacreBLEU scores them.
"""

from __future__ import annotations

from sacremoses import MosesDetokenizer, MosesTokenizer

PRETOKENIZERS = ("none", "moses")


class MosesPretokenizer:
    """Moses tokenizer and detokenizer of one language (its nonbreaking prefixes differ by language)."""

    def __init__(self, lang: str):
        self.lang = lang
        self._tok, self._detok = MosesTokenizer(lang=lang), MosesDetokenizer(lang=lang)

    def tokenize(self, line: str) -> str:
        """'Ein Haus, das.' -> 'Ein Haus , das .' (no XML escaping: the text is not for Moses' decoder)."""
        return self._tok.tokenize(line, escape=False, return_str=True)

    def detokenize(self, line: str) -> str:
        return self._detok.detokenize(line.split())
