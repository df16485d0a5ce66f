"""nmt-translate keeps exactly one output line per input line, in order, whatever the text."""

from __future__ import annotations

import io

import pytest
from conftest import read_pairs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nmt.cli.translate import translate_stream
from nmt.decoding.search import SearchConfig
from nmt.decoding.translator import Translator


@pytest.fixture(scope="module")
def translator(tiny_checkpoint):
    return Translator.from_checkpoint(str(tiny_checkpoint), SearchConfig(beam_size=1))


# Any text except the line terminator itself: control characters, other scripts, emoji, \r, U+2028 ...
lines_strategy = st.lists(
    st.text(alphabet=st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)), max_size=40), max_size=12
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=lines_strategy)
def test_line_count_and_order_are_preserved(translator, lines):
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    out = io.StringIO()
    translate_stream(translator, io.BytesIO(data), out, "<test>", chunk_lines=5)
    got = out.getvalue().split("\n")
    assert got[-1] == "" and len(got) - 1 == len(lines)
    assert len(out.getvalue().splitlines()) == len(lines)  # no output holds any other line boundary either
    for line, hyp in zip(lines, got):
        if not line.strip():
            assert hyp == ""


def test_known_lines_keep_their_positions(translator):
    de, en = read_pairs("train", 6)
    out = io.StringIO()
    data = "\n".join([de[0], "", de[1], de[2], "", "", de[3]]) + "\n"
    translate_stream(translator, io.BytesIO(data.encode()), out, "<test>", chunk_lines=3)
    assert out.getvalue().split("\n")[:-1] == [en[0], "", en[1], en[2], "", "", en[3]]


def test_very_long_line_is_translated_not_dropped(translator):
    de, _ = read_pairs("train", 1)
    long_line = " ".join([de[0]] * 150)  # far beyond the model's 1024 positions
    out = io.StringIO()
    translate_stream(translator, io.BytesIO(f"{de[0]}\n{long_line}\n{de[0]}\n".encode()), out, "<test>", 10)
    got = out.getvalue().split("\n")
    assert len(got) == 4 and got[0] == got[2] and got[1] != ""
    assert translator.truncated == 1


def test_hundred_thousand_lines_stream_in_order(translator):
    de, en = read_pairs("train", 3)
    n = 100_000
    marks = {i: i % 3 for i in range(0, n, 997)}
    data = "".join((de[marks[i]] if i in marks else "") + "\n" for i in range(n)).encode()
    out = io.StringIO()
    assert translate_stream(translator, io.BytesIO(data), out, "<test>", chunk_lines=2000) == n
    got = out.getvalue().split("\n")
    assert len(got) == n + 1
    for i in range(n):
        assert got[i] == (en[marks[i]] if i in marks else ""), i
