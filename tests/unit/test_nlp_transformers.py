"""The transformers NLP backend: its pure logic (label mapping, windows, device, mentions, config) with plain data,
and the backend itself through the real loading code on tiny models built here (``tests/tiny_ner.py``), offline.

The model tests need the ``[transformers]`` extra and are skipped without it; CI installs it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from enrich.config import DEFAULT_MODEL, DEFAULT_TRANSFORMERS_MODEL, EnrichConfig, NLPConfig
from enrich.errors import ConfigError, NLPError
from enrich.nlp import NLPStage, TextAnalyzer, analyzer_identity
from enrich.nlp_cache import NLPCache
from enrich.nlp_transformers import (
    LABEL_MAP,
    TransformersTagger,
    entity_label,
    mentions,
    pick_device,
    torch_threads,
    transformers_identity,
    window,
)
from enrich.record import Record
from enrich.stages import WorkItem

if TYPE_CHECKING:
    from spacy.language import Language

REPO_ROOT = Path(__file__).resolve().parents[2]

RECORD_LABELS = {"PERSON", "ORG", "LOC", "GPE", "MISC"}
"""What a CoNLL-scheme model's entities may be labelled in a record."""

SENTENCES = (
    "Dora Lind works at Globex in Oslo. She met Emil Novak in Toronto after the Olympics.\n"
    "Acme Corp opened an office in Paris.\n\n"
    "Chen Wei said that Initech will grow."
)


# --- pure logic -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "label"),
    [
        ("B-PER", "PERSON"),
        ("I-PER", "PERSON"),
        ("PER", "PERSON"),
        ("S-PER", "PERSON"),
        ("b-org", "ORG"),
        ("LOC", "LOC"),
        ("I-MISC", "MISC"),
        ("GPE", "GPE"),
        ("DATE", "DATE"),
        ("B-NORP", "NORP"),
    ],
)
def test_labels_map_onto_the_record_scheme(raw: str, label: str) -> None:
    assert entity_label(raw) == label


def test_label_map_targets_are_ontonotes_labels() -> None:
    assert set(LABEL_MAP.values()) <= RECORD_LABELS


@pytest.mark.parametrize(
    ("tokenizer_max", "positions", "expected"),
    [
        (512, 512, (512, 128)),  # BERT: the tokenizer knows its window
        (10**30, 512, (510, 127)),  # a tokenizer that does not: the position table bounds it
        (10**30, 514, (512, 128)),  # RoBERTa's table has two rows it cannot use
        (64, None, (64, 16)),
    ],
)
def test_window_and_stride(tokenizer_max: int, positions: int | None, expected: tuple[int, int]) -> None:
    length, stride = window(tokenizer_max, positions)
    assert (length, stride) == expected
    assert 0 < stride < length - 2  # the pipeline refuses an overlap as long as a window's text


def test_window_too_small_is_refused() -> None:
    with pytest.raises(NLPError, match="too small"):
        window(6, None)


def test_device() -> None:
    assert pick_device("cpu", cuda_available=True) == "cpu"
    assert pick_device("auto", cuda_available=False) == "cpu"
    assert pick_device("auto", cuda_available=True) == "cuda"
    assert pick_device("cuda", cuda_available=True) == "cuda"
    with pytest.raises(NLPError, match=r"nlp.device is cuda.*auto or cpu"):
        pick_device("cuda", cuda_available=False)


@pytest.mark.parametrize(("workers", "cpus", "threads"), [(1, 8, 8), (2, 8, 4), (3, 2, 1), (1, 1, 1)])
def test_torch_threads_share_the_cores(workers: int, cpus: int, threads: int) -> None:
    assert torch_threads(workers, cpus) == threads


def test_mentions_come_from_offsets_cut_at_line_breaks() -> None:
    text = "Visit Oslo\nFjord Tours today. Ask Emil."
    emil, oslo, today = text.index("Emil"), text.index("Oslo"), text.index("today")
    entities: list[dict[str, Any]] = [
        {"entity_group": "PER", "start": emil, "end": emil + 4, "word": "emil"},  # out of order, re-joined
        {"entity_group": "LOC", "start": oslo, "end": today - 1, "word": "oslo fjord tours"},  # over the line break
        {"entity_group": "O", "start": today, "end": today + 5, "word": "today"},
    ]
    assert mentions(text, entities) == [("Oslo", "LOC"), ("Fjord Tours", "LOC"), ("Emil", "PERSON")]


def test_config_backend_and_use_transformers() -> None:
    assert NLPConfig().backend == "spacy"
    assert NLPConfig(use_transformers=True).backend == "transformers"  # type: ignore[call-arg]
    assert NLPConfig(use_transformers=False).backend == "spacy"  # type: ignore[call-arg]
    # the spaCy default name stands for the documented hub model; any other name is taken as it is
    assert NLPConfig(backend="transformers").model_name == DEFAULT_TRANSFORMERS_MODEL
    assert NLPConfig(backend="transformers", model="org/ner").model_name == "org/ner"
    assert NLPConfig().model_name == DEFAULT_MODEL
    with pytest.raises(ConfigError, match=r"nlp.backend: Input should be 'spacy' or 'transformers' \(got 'torch'\)"):
        EnrichConfig.from_mapping({"nlp": {"backend": "torch"}})
    with pytest.raises(ConfigError, match=r"nlp.device: Input should be 'auto', 'cpu' or 'cuda'"):
        EnrichConfig.from_mapping({"nlp": {"device": "gpu"}})
    with pytest.raises(ConfigError, match=re.escape("contradicts nlp.backend='spacy'")):
        EnrichConfig.from_mapping({"nlp": {"backend": "spacy", "use_transformers": True}})
    with pytest.raises(ConfigError, match="must be true or false"):
        EnrichConfig.from_mapping({"nlp": {"use_transformers": "yes"}})


def test_default_start_up_imports_no_torch() -> None:
    """The spaCy backend (the default) and the CLI never import torch or transformers: start-up stays light."""
    code = (
        "import sys, crawler.cli, enrich.pipeline\n"
        "from enrich.config import EnrichConfig\n"
        "from enrich.nlp import analyzer_identity\n"
        "enrich.pipeline.build_stages(EnrichConfig(), sinks=[])\n"
        "analyzer_identity(EnrichConfig().nlp)\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    assert result.stdout.strip() == "[]"


def test_missing_extra_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import enrich.nlp_transformers

    monkeypatch.setattr(enrich.nlp_transformers, "find_spec", lambda name: None)
    with pytest.raises(NLPError, match=re.escape("pip install 'webenrich[transformers]'")):
        transformers_identity(NLPConfig(backend="transformers"))


def test_missing_local_folder_is_named(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    with pytest.raises(NLPError, match="no such folder"):
        analyzer_identity(NLPConfig(backend="transformers", model=str(tmp_path / "nowhere")))


def test_hub_id_without_network_says_so_and_names_nlp_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache
    with pytest.raises(NLPError) as caught:
        analyzer_identity(NLPConfig(backend="transformers", model="nobody/no-such-ner-model"))
    message = str(caught.value)
    assert "'nobody/no-such-ner-model'" in message
    assert "network access" in message
    assert "nlp.model" in message


def test_spacy_backend_with_a_hub_id_points_at_the_backend() -> None:
    with pytest.raises(NLPError, match=re.escape("nlp.backend: transformers")):
        analyzer_identity(NLPConfig(model="dslim/bert-base-NER"))


# --- the backend on tiny local models ----------------------------------------------------------------------------


def test_unnamed_labels_are_refused(constant_ner_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "unnamed"
    folder.mkdir()
    for path in constant_ner_model.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {str(i): f"LABEL_{i}" for i in range(len(config["id2label"]))}
    config["label2id"] = {f"LABEL_{i}": i for i in range(len(config["id2label"]))}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(NLPError, match="no named entity labels"):
        analyzer_identity(NLPConfig(backend="transformers", model=str(folder)))
    with pytest.raises(NLPError, match="no named entity labels"):
        TransformersTagger.from_config(NLPConfig(backend="transformers", model=str(folder)))


def test_identity_keeps_backends_and_models_apart(tiny_ner_model: Path, constant_ner_model: Path) -> None:
    spacy_config = NLPConfig()
    trained = NLPConfig(backend="transformers", model=str(tiny_ner_model))
    constant = NLPConfig(backend="transformers", model=str(constant_ner_model))
    identities = {analyzer_identity(c) for c in (spacy_config, trained, constant)}
    assert len(identities) == 3
    assert analyzer_identity(trained).startswith("transformers:")
    assert analyzer_identity(trained) == analyzer_identity(trained)  # stable: a rerun hits its cache
    assert analyzer_identity(trained) != analyzer_identity(trained.model_copy(update={"aggregation": "simple"}))
    keys = {NLPCache(config=c, model=analyzer_identity(c)).key("Same text.", None) for c in (spacy_config, trained)}
    assert len(keys) == 2


def test_trained_model_finds_entities_with_record_labels(tiny_ner_model: Path) -> None:
    analyzer = TextAnalyzer.from_config(NLPConfig(backend="transformers", model=str(tiny_ner_model)))
    [result] = analyzer.analyze([SENTENCES], [None])
    found = {(e.text, e.label) for e in result.entities}
    assert {e.label for e in result.entities} <= RECORD_LABELS
    assert not any(re.match(r"^([BIESLU]-|LABEL_)", e.label) for e in result.entities)
    # a floor on what a model trained on these names finds in new sentences: it can fail
    assert {("Dora Lind", "PERSON"), ("Globex", "ORG"), ("Acme Corp", "ORG")} <= found
    assert any(label == "LOC" for _, label in found)
    normalized = " ".join(SENTENCES.split())
    assert all(e.text in normalized for e in result.entities)


def test_offsets_every_entity_is_text_of_the_record(constant_ner_model: Path) -> None:
    """Every word is an entity: odd spacing, accents, line breaks and punctuation must all come back verbatim."""
    config = NLPConfig(backend="transformers", model=str(constant_ner_model), max_entities=10_000)
    analyzer = TextAnalyzer.from_config(config)
    texts = [
        "Zoë  Müller\tvisited   Kraków.\nThen she wrote: «Ça va?» — and left…",
        "ACME\u00a0Corp (est. 1999) sells widgets; see acme.example/about.",
    ]
    results = analyzer.analyze(texts, [None, None])
    for text, result in zip(texts, results, strict=True):
        normalized = " ".join(text.split())
        assert result.entities
        for entity in result.entities:
            assert entity.text in normalized, entity
            assert entity.label == "PERSON"
    assert "Zoë" in {e.text for e in results[0].entities}
    assert "Kraków" in {e.text for e in results[0].entities}


@pytest.mark.parametrize("aggregation", ["simple", "first", "average", "max"])
def test_every_aggregation_gives_record_text(tiny_ner_model: Path, aggregation: str) -> None:
    config = NLPConfig(backend="transformers", model=str(tiny_ner_model), aggregation=aggregation)  # type: ignore[arg-type]
    [result] = TextAnalyzer.from_config(config).analyze([SENTENCES], [None])
    assert result.entities
    assert all(e.text in " ".join(SENTENCES.split()) for e in result.entities)
    assert {e.label for e in result.entities} <= RECORD_LABELS


def test_long_text_is_windowed_not_truncated(constant_ner_model: Path) -> None:
    """A text of many windows: every word, up to the last, is tagged once (overlaps merged, nothing cut)."""
    config = NLPConfig(backend="transformers", model=str(constant_ner_model), max_entities=10_000)
    tagger = TransformersTagger.from_config(config)
    rows: list[int] = []
    tagger.model.register_forward_hook(
        lambda module, args, kwargs, out: rows.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    words = [f"Word{chr(65 + i % 26)}{chr(65 + i // 26 % 26)}" for i in range(400)]
    text = " ".join(words)
    [found] = tagger.tag([text])
    tagged = [t for t, _ in found]
    assert tagged[-1] == words[-1]
    assert sorted(set(tagged)) == sorted(words)
    windows = sum(rows)
    assert windows > 1
    analyzer = TextAnalyzer(nlp=_blank(), config=config, tagger=tagger)
    [result] = analyzer.analyze([text], [None])
    assert {e.text for e in result.entities} == set(words)
    assert all(e.count == 1 for e in result.entities)


def test_texts_are_batched(constant_ner_model: Path) -> None:
    """One pipeline call per analyzed batch, ``batch_size`` windows per forward pass."""
    tagger = TransformersTagger.from_config(
        NLPConfig(backend="transformers", model=str(constant_ner_model), batch_size=4)
    )
    rows: list[int] = []
    tagger.model.register_forward_hook(
        lambda module, args, kwargs, out: rows.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    texts = [f"Alice Smith met visitor number {i} in Paris." for i in range(10)]
    found = tagger.tag(texts)
    assert rows == [4, 4, 2]
    assert len(found) == 10
    assert all(any(t == "Alice" for t, _ in mentions_) for mentions_ in found)


def test_empty_texts_keep_their_place(constant_ner_model: Path) -> None:
    tagger = TransformersTagger.from_config(NLPConfig(backend="transformers", model=str(constant_ner_model)))
    found = tagger.tag(["", "Oslo", "  \n "])
    assert found[0] == []
    assert found[2] == []
    assert found[1] == [("Oslo", "PERSON")]


def test_keywords_and_summary_are_the_spacy_backends(tiny_ner_model: Path, analyzer: TextAnalyzer) -> None:
    """Same tokenizer rules, stop words and sentence bounds: only the entities differ between backends."""
    transformers = TextAnalyzer.from_config(NLPConfig(backend="transformers", model=str(tiny_ner_model)))
    text = SENTENCES + "\n" + ("The harbour museum of Oslo keeps ship models. " * 3)
    [spacy_result] = analyzer.analyze([text], [None])
    [result] = transformers.analyze([text], [None])
    assert result.keywords == spacy_result.keywords
    assert result.summary == spacy_result.summary
    assert result.language == spacy_result.language == "en"


@pytest.mark.parametrize("executor", ["thread", "process"])
async def test_stage_runs_the_backend_in_its_executor(tiny_ner_model: Path, executor: str) -> None:
    config = NLPConfig(backend="transformers", model=str(tiny_ner_model), executor=executor, workers=1)  # type: ignore[arg-type]
    stage = NLPStage(config=config)
    await stage.open()
    try:
        items = [WorkItem(record=Record(url=f"http://127.0.0.1/{i}", text=SENTENCES)) for i in range(3)]
        items.append(WorkItem(record=Record(url="http://127.0.0.1/other", text="Bruno Keller joined Umbrella Labs.")))
        for item in items:
            await stage.process(item)
    finally:
        await stage.close()
    assert stage.cache is not None
    assert stage.cache.misses == 2  # the same text thrice is analyzed once
    for item in items:
        assert item.record.entities
        assert {e.label for e in item.record.entities} <= RECORD_LABELS
        assert all(e.text in " ".join((item.record.text or "").split()) for e in item.record.entities)
    assert ("Bruno Keller", "PERSON") in {(e.text, e.label) for e in items[-1].record.entities}


async def test_stage_open_stops_on_a_missing_model(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    stage = NLPStage(config=NLPConfig(backend="transformers", model=str(tmp_path / "absent")))
    with pytest.raises(NLPError, match="no such folder"):
        await stage.open()
    await stage.close()


def _blank() -> Language:
    from enrich.nlp_spacy import load_sentencizer

    return load_sentencizer()
