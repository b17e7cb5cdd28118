"""Elasticsearch ``tokenization`` settings and the WordPiece tokenizer they describe.

Elasticsearch tokenizes text itself before handing token ids to the model, so an uploaded model
only works if we tokenize exactly as Elasticsearch does. The algorithm (BERT basic tokenization
then WordPiece) comes from the HuggingFace ``tokenizers`` library; this module only maps
Elasticsearch's settings onto it:

* ``do_lower_case`` (default false) lower-cases and, as in Elasticsearch, also strips accents;
* ``with_special_tokens`` (default true) wraps the sequence as ``[CLS] ... [SEP]``;
* ``max_sequence_length`` (default 512) counts the special tokens;
* ``truncate`` ``first`` / ``second`` / ``balanced`` cut a single sequence to the maximum length
  (they only differ for sequence pairs, which no supported task uses); ``none`` refuses a text
  that is too long with Elasticsearch's own message;
* ``span`` is validated like Elasticsearch does but otherwise ignored: we never split a long text
  into overlapping windows (Elasticsearch only does so for ``truncate: none`` with a span).

Only the ``[MASK]`` token is kept whole when it appears in the text (Elasticsearch's "never
split" list); other special tokens in user text are tokenized as plain text, so a document
cannot inject ``[SEP]``. ``bert`` and ``mpnet`` are supported (``mpnet`` is BERT tokenization
with ``<s>``/``</s>`` special tokens and only two model inputs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

import numpy as np
import numpy.typing as npt
from tokenizers import AddedToken, Encoding, Tokenizer
from tokenizers.models import WordPiece
from tokenizers.normalizers import BertNormalizer
from tokenizers.pre_tokenizers import BertPreTokenizer
from tokenizers.processors import TemplateProcessing

from modelfleet.runtime.errors import (
    ModelRuntimeError,
    NlpConfigError,
    NlpInputError,
    UnsupportedNlpTaskError,
)
from modelfleet.runtime.nlp.es_text import java_str

__all__ = [
    "ES_TOKENIZATIONS",
    "MODEL_INPUT_NAMES",
    "SUPPORTED_TOKENIZATIONS",
    "TextTokenizer",
    "TokenizationKind",
    "TokenizationSettings",
    "Tokens",
    "Truncate",
    "apply_tokenization_update",
    "parse_tokenization",
]

DEFAULT_MAX_SEQUENCE_LENGTH = 512
UNSET_SPAN = -1
MAX_INPUT_CHARS_PER_WORD = 100  # Elasticsearch's WordPiece limit; longer words become [UNK]


class TokenizationKind(StrEnum):
    BERT = "bert"
    MPNET = "mpnet"


class Truncate(StrEnum):
    FIRST = "first"
    SECOND = "second"
    NONE = "none"
    BALANCED = "balanced"


# Every tokenization Elasticsearch knows, to tell "unsupported here" from "no such thing".
ES_TOKENIZATIONS = ("bert", "bert_ja", "deberta_v2", "mpnet", "roberta", "xlm_roberta")
SUPPORTED_TOKENIZATIONS: tuple[str, ...] = tuple(kind.value for kind in TokenizationKind)
_SUPPORTED_LIST = ", ".join(SUPPORTED_TOKENIZATIONS)

# The tensors Elasticsearch sends for each tokenization, in the positional order of an
# eland-traced TorchScript model (tokens, arg_1, arg_2, arg_3).
MODEL_INPUT_NAMES: dict[TokenizationKind, tuple[str, ...]] = {
    TokenizationKind.BERT: ("input_ids", "attention_mask", "token_type_ids", "position_ids"),
    TokenizationKind.MPNET: ("input_ids", "attention_mask"),
}


@dataclass(frozen=True)
class SpecialTokens:
    cls: str
    sep: str
    pad: str
    unk: str
    mask: str


SPECIAL_TOKENS: dict[TokenizationKind, SpecialTokens] = {
    TokenizationKind.BERT: SpecialTokens(cls="[CLS]", sep="[SEP]", pad="[PAD]", unk="[UNK]", mask="[MASK]"),
    TokenizationKind.MPNET: SpecialTokens(cls="<s>", sep="</s>", pad="<pad>", unk="[UNK]", mask="<mask>"),
}


@dataclass(frozen=True)
class TokenizationSettings:
    """The effective ``tokenization`` of a model (Elasticsearch defaults filled in)."""

    kind: TokenizationKind = TokenizationKind.BERT
    do_lower_case: bool = False
    with_special_tokens: bool = True
    max_sequence_length: int = DEFAULT_MAX_SEQUENCE_LENGTH
    truncate: Truncate = Truncate.FIRST
    span: int = UNSET_SPAN


_SETTING_FIELDS = ("do_lower_case", "with_special_tokens", "max_sequence_length", "truncate", "span")
_UPDATE_FIELDS = ("truncate", "span")


def _single_kind(
    config: object, where: str, error: type[ModelRuntimeError]
) -> tuple[str, Mapping[str, object]]:
    if not isinstance(config, Mapping) or len(config) != 1:
        raise error(f'[{where}] must be an object with exactly one tokenization type, e.g. {{"bert": {{}}}}')
    ((kind, body),) = config.items()
    if not isinstance(body, Mapping):
        raise error(f"[{where}] [{kind}] must be an object")
    return str(kind), body


def _kind(name: str, error: type[ModelRuntimeError]) -> TokenizationKind:
    try:
        return TokenizationKind(name)
    except ValueError:
        pass
    if name in ES_TOKENIZATIONS:
        unsupported = UnsupportedNlpTaskError if error is NlpConfigError else error
        raise unsupported(
            f"tokenization [{name}] is not supported; supported tokenizations are [{_SUPPORTED_LIST}]"
        )
    raise error(f"unknown tokenization [{name}]; supported tokenizations are [{_SUPPORTED_LIST}]")


def _check_fields(
    body: Mapping[str, object], allowed: Sequence[str], parser: str, error: type[ModelRuntimeError]
) -> None:
    for field in body:
        if field not in allowed:
            raise error(f"[{parser}] unknown field [{field}]")


def _bool(body: Mapping[str, object], field: str, default: bool, error: type[ModelRuntimeError]) -> bool:
    value = body.get(field)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise error(f"[{field}] must be a boolean; got [{java_str(value)}]")
    return value


def _int(body: Mapping[str, object], field: str, default: int, error: type[ModelRuntimeError]) -> int:
    value = body.get(field)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"[{field}] must be an integer; got [{java_str(value)}]")
    return value


def _truncate(body: Mapping[str, object], default: Truncate, error: type[ModelRuntimeError]) -> Truncate:
    value = body.get("truncate")
    if value is None:
        return default
    try:
        return Truncate(str(value).lower())
    except ValueError:
        allowed = ", ".join(t.value for t in Truncate)
        raise error(f"[truncate] must be one of [{allowed}]; got [{java_str(value)}]") from None


def _check_span(settings: TokenizationSettings, error: type[ModelRuntimeError]) -> None:
    span, truncate = settings.span, settings.truncate
    if span < 0 and span != UNSET_SPAN:
        raise error(
            f"[span] must be non-negative to indicate span length or [{UNSET_SPAN}] to indicate no "
            "windowing should occur"
        )
    if span > settings.max_sequence_length:
        raise error(
            f"[span] provided [{span}] must not be greater than [max_sequence_length] provided "
            f"[{settings.max_sequence_length}]"
        )
    if span != UNSET_SPAN and truncate is not Truncate.NONE:
        raise error(f"[span] must not be provided when [truncate] is [{truncate.value}]")


def parse_tokenization(config: object) -> TokenizationSettings:
    """The model's ``tokenization`` object (``{"bert": {...}}``; None = all defaults).

    Raises NlpConfigError (UnsupportedNlpTaskError for a tokenization Elasticsearch knows but we
    do not implement) with an Elasticsearch-style message.
    """
    if config is None:
        return TokenizationSettings()
    name, body = _single_kind(config, "tokenization", NlpConfigError)
    kind = _kind(name, NlpConfigError)
    _check_fields(body, _SETTING_FIELDS, name, NlpConfigError)
    settings = TokenizationSettings(
        kind=kind,
        do_lower_case=_bool(body, "do_lower_case", False, NlpConfigError),
        with_special_tokens=_bool(body, "with_special_tokens", True, NlpConfigError),
        max_sequence_length=_int(body, "max_sequence_length", DEFAULT_MAX_SEQUENCE_LENGTH, NlpConfigError),
        truncate=_truncate(body, Truncate.FIRST, NlpConfigError),
        span=_int(body, "span", UNSET_SPAN, NlpConfigError),
    )
    if settings.max_sequence_length <= 0:
        raise NlpConfigError("[max_sequence_length] must be positive")
    _check_span(settings, NlpConfigError)
    return settings


def apply_tokenization_update(settings: TokenizationSettings, update: object) -> TokenizationSettings:
    """Apply a per-request ``tokenization`` override; only ``truncate`` and ``span`` may change.

    As in Elasticsearch, the override must name the model's own tokenization type, and setting
    ``truncate`` to something other than ``none`` clears a stored span. Raises NlpInputError.
    """
    name, body = _single_kind(update, "tokenization", NlpInputError)
    kind = _kind(name, NlpInputError)
    if kind is not settings.kind:
        raise NlpInputError(
            f"Tokenization config of type [{settings.kind.value}] can not be updated with a request of "
            f"type [{kind.value}]"
        )
    _check_fields(body, _UPDATE_FIELDS, f"{kind.value}_tokenization_update", NlpInputError)
    truncate = _truncate(body, settings.truncate, NlpInputError)
    span = _int(body, "span", UNSET_SPAN, NlpInputError)
    if "span" in body and span != UNSET_SPAN and truncate is not Truncate.NONE:
        raise NlpInputError(f"[span] must not be provided when [truncate] is [{truncate.value}]")
    if "truncate" in body and truncate is not Truncate.NONE:
        updated = replace(settings, truncate=truncate, span=UNSET_SPAN)
    else:
        updated = replace(settings, truncate=truncate, span=span if "span" in body else settings.span)
    _check_span(updated, NlpInputError)
    return updated


@dataclass(frozen=True, slots=True)
class Tokens:
    """One tokenized text: ids as the model sees them plus the encoding for offsets and words."""

    ids: npt.NDArray[np.int64]
    encoding: Encoding
    truncated: bool


class TextTokenizer:
    """A ``tokenizers.Tokenizer`` built from an uploaded vocabulary list and Elasticsearch settings.

    ``tokenize`` is safe to call from several threads at once (it never mutates the tokenizer).
    """

    def __init__(self, vocabulary: Sequence[str], settings: TokenizationSettings) -> None:
        self.settings = settings
        self.special = SPECIAL_TOKENS[settings.kind]
        self.tokenizer = build_hf_tokenizer(vocabulary, settings)
        self._num_special = 2 if settings.with_special_tokens else 0
        self.pad_token_id: int = self.tokenizer.token_to_id(self.special.pad) or 0

    def tokenize(self, text: str, truncate: Truncate | None = None) -> Tokens:
        """Token ids of ``text``, cut to ``max_sequence_length`` unless ``truncate`` is none.

        ``truncate`` defaults to the model's setting (a request override passes its own).
        Raises NlpInputError when the text is too long and truncation is off.
        """
        truncate = self.settings.truncate if truncate is None else truncate
        max_length = self.settings.max_sequence_length
        encoding = self.tokenizer.encode(text, add_special_tokens=False)
        budget = max(max_length - self._num_special, 0)
        truncated = len(encoding.ids) > budget
        if truncated:
            if truncate is Truncate.NONE:
                raise NlpInputError(
                    "Input too large. The tokenized input length "
                    f"[{len(encoding.ids) + self._num_special}] exceeds the maximum sequence length "
                    f"[{max_length}]"
                )
            encoding.truncate(budget)
        if self._num_special:
            encoding = self.tokenizer.post_process(encoding, None, True)
        return Tokens(ids=np.asarray(encoding.ids, dtype=np.int64), encoding=encoding, truncated=truncated)


def build_hf_tokenizer(vocabulary: Sequence[str], settings: TokenizationSettings) -> Tokenizer:
    """BertNormalizer + BertPreTokenizer + WordPiece (+ [CLS]/[SEP] template) for ``settings``.

    Token ids are positions in ``vocabulary``; a token listed twice maps to its last position,
    as in Elasticsearch. Raises NlpConfigError when a token the settings need is missing.
    """
    special = SPECIAL_TOKENS[settings.kind]
    vocab = {token: index for index, token in enumerate(vocabulary)}
    if special.unk not in vocab:
        raise NlpConfigError(f"provided vocabulary does not contain the unknown token of [{special.unk}]")
    for token in (special.cls, special.sep) if settings.with_special_tokens else ():
        if token not in vocab:
            raise NlpConfigError(
                f"provided vocabulary does not contain the token [{token}] needed by [with_special_tokens]"
            )
    tokenizer = Tokenizer(
        WordPiece(vocab, unk_token=special.unk, max_input_chars_per_word=MAX_INPUT_CHARS_PER_WORD)
    )
    tokenizer.normalizer = BertNormalizer(
        clean_text=True,
        handle_chinese_chars=True,
        strip_accents=settings.do_lower_case,  # Elasticsearch: strip_accents defaults to do_lower_case
        lowercase=settings.do_lower_case,
    )
    tokenizer.pre_tokenizer = BertPreTokenizer()
    if settings.with_special_tokens:
        tokenizer.post_processor = TemplateProcessing(
            single=f"{special.cls} $A {special.sep}",
            special_tokens=[(special.cls, vocab[special.cls]), (special.sep, vocab[special.sep])],
        )
    if special.mask in vocab:
        tokenizer.add_special_tokens([AddedToken(special.mask, normalized=False, special=True)])
    return tokenizer
