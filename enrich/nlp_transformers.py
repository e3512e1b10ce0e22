"""The transformers backend of the NLP stage (``nlp.backend: transformers``): entities from a Hugging Face
token-classification model.

The model (``nlp.model``: a hub id or a local folder saved with ``save_pretrained``) runs through the
``token-classification`` pipeline with an aggregation strategy (``nlp.aggregation``), a batch of texts per call
(``nlp.batch_size`` windows per forward pass). A text longer than the model's window is not cut: the fast tokenizer
splits it into windows that overlap by a quarter of a window (:data:`STRIDE_FRACTION`) and the pipeline merges the
entities of the overlaps, so an entity on a window's edge is seen whole in the next one.

Labels are mapped onto the record's scheme, spaCy's OntoNotes labels (:data:`LABEL_MAP`): no ``B-``/``I-``
prefixes, and a model whose labels have no names (``LABEL_0``...) is refused when it loads.

``transformers`` and ``torch`` are the ``[transformers]`` extra; they are imported only in the workers of a stage
whose backend is this one (the parent only checks that they are installed and finds the model).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

from enrich.errors import NLPError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from enrich.config import NLPConfig
    from enrich.nlp import Mention

__all__ = [
    "EXTRA_HINT",
    "LABEL_MAP",
    "STRIDE_FRACTION",
    "TransformersTagger",
    "entity_label",
    "mentions",
    "pick_device",
    "torch_threads",
    "transformers_identity",
    "window",
]

logger = logging.getLogger(__name__)

EXTRA_HINT = "pip install 'webenrich[transformers]'"
"""What installs this backend's libraries (transformers and a torch build)."""

LABEL_MAP = {
    "PER": "PERSON",
    "PERS": "PERSON",
    "PERSON": "PERSON",
    "ORG": "ORG",
    "LOC": "LOC",
    "GPE": "GPE",
    "MISC": "MISC",
}
"""Model label (CoNLL-2003 and WikiANN schemes, prefix removed) -> record label (spaCy's OntoNotes scheme).

PER is PERSON. LOC stays LOC: a CoNLL location is a country or city (OntoNotes GPE) as much as a river or mountain
(OntoNotes LOC), and the model does not say which; a filter for places is ``entity_labels: [GPE, LOC]``. MISC
(nationalities, events, works, products: OntoNotes NORP, EVENT, WORK_OF_ART, PRODUCT) has no single OntoNotes
label and stays MISC. A label not listed (a model trained on OntoNotes says DATE, NORP...) is kept, upper-cased."""

_PREFIX = re.compile(r"^[BIESLU]-", re.IGNORECASE)
"""BIO / BIOES / BILOU tag prefixes; the pipeline's aggregation removes them, a stray one is removed here."""

_UNNAMED = re.compile(r"^LABEL_\d+$")

STRIDE_FRACTION = 4
"""Windows overlap by 1/4 of a window (128 of BERT's 512 tokens): enough context on both sides of a window's edge
for an entity there, at the cost of 1/3 more forward passes on long texts only."""

_SPECIAL_TOKENS = 2
"""[CLS] and [SEP] (or <s> and </s>): in every window, besides the text's tokens."""


def entity_label(raw: str) -> str:
    """The record's label for a model's label: ``B-PER``, ``I-PER`` and ``PER`` are ``PERSON``."""
    label = _PREFIX.sub("", raw.strip()).upper()
    return LABEL_MAP.get(label, label)


def window(tokenizer_max: int, positions: int | None) -> tuple[int, int]:
    """Tokens per window and the overlap (stride) between windows, from the tokenizer's ``model_max_length``
    (a huge number when the tokenizer does not know it) and the model's ``max_position_embeddings``.

    Raises:
        NLPError: the window is too small to hold text beside its special tokens and an overlap.
    """
    length = tokenizer_max
    if positions is not None and length > positions:
        # unknown to the tokenizer: the position table bounds it (RoBERTa's has 2 rows more than it can use)
        length = positions - _SPECIAL_TOKENS
    if length < 2 * _SPECIAL_TOKENS + 4:
        raise NLPError(f"the model's window of {length} tokens is too small to tag text in")
    stride = max(1, length // STRIDE_FRACTION)
    return length, stride


def pick_device(requested: str, *, cuda_available: bool) -> str:
    """``cuda`` or ``cpu`` for ``nlp.device``.

    Raises:
        NLPError: ``cuda`` was asked for and torch sees no CUDA device.
    """
    if requested == "cpu":
        return "cpu"
    if requested == "cuda" and not cuda_available:
        raise NLPError(
            "nlp.device is cuda but torch sees no CUDA device (no GPU, or a CPU-only torch build): use nlp.device "
            "auto or cpu"
        )
    return "cuda" if cuda_available else "cpu"


def torch_threads(workers: int, cpus: int) -> int:
    """Intra-op threads per worker on CPU: the cores shared among the stage's workers, so that ``workers``
    processes (or threads) do not each start one thread per core and thrash."""
    return max(1, cpus // max(1, workers))


def _require_extra() -> None:
    missing = [name for name in ("transformers", "torch") if find_spec(name) is None]
    if missing:
        raise NLPError(f"nlp.backend transformers needs {' and '.join(missing)}: {EXTRA_HINT}")


def _is_path(name: str) -> bool:
    """A path, not a hub id (``name`` or ``owner/name``)."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name or Path(name).exists()


def _model_files(name: str) -> Path:
    """The folder of a local model, or the hub snapshot holding a hub id's ``config.json`` (downloaded if need be).

    Raises:
        NLPError: no such folder, or the hub id cannot be found (offline and not cached, or no such model).
    """
    folder = Path(name).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise NLPError(f"nlp.model {name!r} is a folder without config.json: not a model saved by save_pretrained")
        return folder
    if _is_path(name):
        raise NLPError(f"nlp.model {name!r}: no such folder (a local model is a folder saved by save_pretrained)")
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(name, "config.json")).parent
    except Exception as exc:  # offline, no such repository, a gated one: all say the same to the user
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NLPError(
            f"transformers model {name!r} could not be found on the Hugging Face hub nor in its local cache "
            f"({type(exc).__name__}: {reason}). A hub id is downloaded on first use, which needs network access to "
            "the hub; without it, set nlp.model (--nlp-model) to the path of a local folder holding the model "
            "(saved with save_pretrained)."
        ) from exc


def _check_labels(name: str, config: dict[str, Any]) -> None:
    labels = [str(label) for label in (config.get("id2label") or {}).values()]
    if not labels or all(_UNNAMED.match(label) for label in labels):
        raise NLPError(
            f"transformers model {name!r} has no named entity labels (id2label is {labels[:4]}...): nlp.model must be "
            "a token-classification (NER) model whose config names its labels (B-PER, I-ORG...)"
        )


def transformers_identity(config: NLPConfig) -> str:
    """The cache identity of the transformers backend's analyses: backend, model (a hub snapshot's commit, or a
    local folder's files by name, size and time) and aggregation. Checks on the way that the extra is installed and
    the model found, with named labels, so a run stops before fetching anything when they are not.

    Raises:
        NLPError: the extra is missing, or the model cannot be found or has no named labels.
    """
    _require_extra()
    name = config.model_name
    folder = _model_files(name)
    try:
        model_config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise NLPError(f"transformers model {name!r}: cannot read its config.json: {exc}") from exc
    _check_labels(name, model_config)
    digest = hashlib.blake2b(digest_size=12)
    for path in sorted(folder.iterdir()):
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}\0".encode())
    # a hub snapshot's folder is named after its commit; a local folder is known by its files
    version = folder.name if "snapshots" in folder.parts else digest.hexdigest()
    return f"transformers:{name}@{version}:{config.aggregation}"


class TransformersTagger:
    """Entities of texts from a token-classification pipeline. One per worker; not shared across threads.

    Args:
        pipeline: a ``transformers`` ``TokenClassificationPipeline`` with a fast tokenizer.
        batch_size: windows per forward pass.
        stride: tokens of overlap between a long text's windows.
    """

    def __init__(self, *, pipeline: Any, batch_size: int, stride: int) -> None:
        self._pipeline = pipeline
        self._batch_size = batch_size
        self._stride = stride

    @property
    def model(self) -> Any:
        """The loaded ``torch`` model (tests hook its forward passes)."""
        return self._pipeline.model

    @property
    def stride(self) -> int:
        """Tokens of overlap between the windows of a long text."""
        return self._stride

    @classmethod
    def from_config(cls, config: NLPConfig) -> TransformersTagger:
        """Load ``config.model_name`` on ``config.device``.

        Raises:
            NLPError: the extra is missing, the model cannot be loaded, or it is no usable NER model.
        """
        _require_extra()
        import torch
        from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # its bars would interleave with the crawl's progress lines
        name = config.model_name
        source = str(_model_files(name)) if Path(name).expanduser().is_dir() else name
        device = pick_device(config.device, cuda_available=torch.cuda.is_available())
        if device == "cpu" and "OMP_NUM_THREADS" not in os.environ:  # an explicit setting wins
            cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            torch.set_num_threads(torch_threads(config.workers, cpus))
        try:
            tokenizer = AutoTokenizer.from_pretrained(source)
            model = AutoModelForTokenClassification.from_pretrained(source)
        except Exception as exc:  # a broken download, missing weights, an unknown architecture
            raise NLPError(f"transformers model {name!r} could not be loaded: {type(exc).__name__}: {exc}") from exc
        if not getattr(tokenizer, "is_fast", False):
            raise NLPError(
                f"transformers model {name!r} has no fast tokenizer (tokenizer.json): long texts cannot be split into "
                "windows without one"
            )
        _check_labels(name, {"id2label": model.config.id2label})
        length, stride = window(int(tokenizer.model_max_length), getattr(model.config, "max_position_embeddings", None))
        tokenizer.model_max_length = length
        tagger = pipeline(
            "token-classification",
            model=model,
            tokenizer=tokenizer,
            aggregation_strategy=config.aggregation,
            stride=stride,
            device=torch.device(device),
        )
        logger.info(
            "transformers NER model %s on %s (window %d tokens, stride %d, %d torch threads)",
            name,
            device,
            length,
            stride,
            torch.get_num_threads(),
        )
        return cls(pipeline=tagger, batch_size=config.batch_size, stride=stride)

    def tag(self, texts: Sequence[str]) -> list[list[Mention]]:
        """The mentions of each text: each entity's text as it stands in the text (from the tokenizer's character
        offsets, never the re-joined word pieces), cut at line breaks, with its record label."""
        found: list[list[Mention]] = [[] for _ in texts]
        wanted = [index for index, text in enumerate(texts) if text.strip()]
        if not wanted:
            return found
        outputs = self._pipeline([texts[index] for index in wanted], batch_size=self._batch_size)
        for index, entities in zip(wanted, outputs, strict=True):
            found[index] = list(mentions(texts[index], entities))
        return found


def mentions(text: str, entities: Sequence[dict[str, Any]]) -> list[Mention]:
    """Mentions of the pipeline's aggregated ``entities`` of ``text``, in text order. An entity that spans a line
    break (the model sees no line breaks; extracted text has one after each heading, cell and list item) is cut
    into one mention per line."""
    out: list[Mention] = []
    for entity in sorted(entities, key=lambda e: (e["start"], e["end"])):
        label = entity_label(str(entity.get("entity_group") or entity.get("entity") or ""))
        if not label or label == "O":
            continue
        for line in text[entity["start"] : entity["end"]].splitlines():
            if line.strip():
                out.append((line.strip(), label))
    return out
