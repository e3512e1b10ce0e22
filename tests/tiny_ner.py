"""A tiny BERT token-classification model and WordPiece tokenizer built here, with no network: what the tests of
the transformers NLP backend load through the real code path (``save_pretrained`` folders, ``nlp.model`` a path).

``build_trained`` trains the model for a few hundred steps on template sentences, so it finds the names it was
shown (Alice Smith is a person, Acme Corp an organization, Paris a location) in new sentences; ``build_constant``
sets the classifier to one label for every token, so every word of a text comes back as an entity: structural tests
(offsets, long-text windows) then do not depend on what a model learned.

Needs ``transformers``, ``torch`` and ``tokenizers`` (the ``[transformers]`` extra).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
"""CoNLL-2003's scheme, as the most used NER models on the hub label."""

WINDOW = 64
"""Tokens per window (max_position_embeddings): small, so that a paragraph already needs several windows."""

PEOPLE = ["Alice Smith", "Bruno Keller", "Chen Wei", "Dora Lind", "Emil Novak", "Fatima Haddad"]
ORGS = ["Acme Corp", "Globex", "Initech", "Umbrella Labs", "Northwind Traders"]
PLACES = ["Paris", "Berlin", "Oslo", "Lisbon", "Nairobi", "Toronto"]
MISC = ["Olympics", "Eurovision"]
FILLER_TEXT = (
    "the report said that a new office opened last spring and that the team met there every week to plan work "
    "on the river bridge while visitors came from far away for the market"
)
FILLER = FILLER_TEXT.split()

TEMPLATES = [
    "{PER} works at {ORG} in {LOC} .",
    "{PER} met {PER} in {LOC} last year .",
    "{ORG} opened an office in {LOC} .",
    "In {LOC} , {PER} joined {ORG} after the {MISC} .",
    "The {MISC} came to {LOC} and {ORG} paid for it .",
    "{PER} said that {ORG} will grow .",
]


def _sentence(rng: random.Random) -> tuple[list[str], list[str]]:
    """One labelled sentence: its words and their BIO tags."""
    words: list[str] = []
    tags: list[str] = []
    pools = {"PER": PEOPLE, "ORG": ORGS, "LOC": PLACES, "MISC": MISC}
    for part in rng.choice(TEMPLATES).split():
        kind = part.strip("{}")
        if part.startswith("{") and kind in pools:
            for position, word in enumerate(rng.choice(pools[kind]).split()):
                words.append(word)
                tags.append(("B-" if position == 0 else "I-") + kind)
        else:
            words.append(part)
            tags.append("O")
    for word in rng.sample(FILLER, 3):  # plain words around the names, so "O" is learnt in context
        words.insert(rng.randrange(len(words)), word)
        tags.insert(words.index(word), "O")
    return words, tags


def _tokenizer(
    folder: Path, corpus: Iterable[str] | None = None, vocab_size: int = 400, window: int = WINDOW
) -> object:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=False)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    if corpus is None:
        rng = random.Random(1)
        corpus = [" ".join(_sentence(rng)[0]) for _ in range(300)] + [" ".join(FILLER)]
    tokenizer.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", tokenizer.token_to_id("[CLS]")), ("[SEP]", tokenizer.token_to_id("[SEP]"))],
    )
    fast = BertTokenizerFast(tokenizer_object=tokenizer, model_max_length=window, do_lower_case=False)
    fast.save_pretrained(folder)
    return fast


def _model(vocab_size: int, **shape: int) -> object:
    import torch
    from transformers import BertConfig, BertForTokenClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=vocab_size,
        **{
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 37,
            "max_position_embeddings": WINDOW,
            **shape,
        },
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    return BertForTokenClassification(config)


def build_constant(folder: Path, label: str = "B-PER") -> Path:
    """A model that tags every token ``label`` (zero classifier weights, one bias): each word is an entity."""
    import torch

    tokenizer = _tokenizer(folder)
    model = _model(len(tokenizer))  # type: ignore[arg-type]
    with torch.no_grad():
        model.classifier.weight.zero_()  # type: ignore[attr-defined]
        model.classifier.bias.fill_(-10.0)  # type: ignore[attr-defined]
        model.classifier.bias[LABELS.index(label)] = 10.0  # type: ignore[attr-defined]
    model.save_pretrained(folder)  # type: ignore[attr-defined]
    return folder


def build_trained(folder: Path, steps: int = 120) -> Path:
    """A model trained for ``steps`` steps on template sentences (about 15 s on two busy cores)."""
    import torch

    tokenizer = _tokenizer(folder)
    model = _model(len(tokenizer))  # type: ignore[arg-type]
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)  # type: ignore[attr-defined]
    rng = random.Random(2)
    model.train()  # type: ignore[attr-defined]
    for _ in range(steps):
        batch = [_sentence(rng) for _ in range(16)]
        encoded = tokenizer(  # type: ignore[operator]
            [words for words, _ in batch], is_split_into_words=True, padding=True, return_tensors="pt"
        )
        labels = []
        for row, (_, tags) in enumerate(batch):
            previous = None
            row_labels = []
            for word in encoded.word_ids(row):
                # only a word's first piece is scored: the "first" aggregation reads that one
                row_labels.append(-100 if word is None or word == previous else LABELS.index(tags[word]))
                previous = word
            labels.append(row_labels)
        loss = model(**encoded, labels=torch.tensor(labels)).loss  # type: ignore[operator]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()  # type: ignore[attr-defined]
    model.save_pretrained(folder)  # type: ignore[attr-defined]
    return folder


def build_base_shaped(folder: Path, corpus: Iterable[str]) -> Path:
    """An untrained model of BERT-base's shape and window (12 layers of 768, 512 tokens, a WordPiece vocabulary of
    28,996 trained on ``corpus``), as dslim/bert-base-NER has: its entities mean nothing, but a forward pass costs
    what that model's does, so it stands in for it in throughput measurements where the hub cannot be reached."""
    tokenizer = _tokenizer(folder, corpus, vocab_size=28_996, window=512)
    shape = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072}
    model = _model(len(tokenizer), max_position_embeddings=512, **shape)  # type: ignore[arg-type]
    model.save_pretrained(folder)  # type: ignore[attr-defined]
    return folder
