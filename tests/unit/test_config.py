"""The one config: valid defaults, specific messages naming the dotted key, YAML loading, replace()."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pydantic
import pytest

from enrich.config import EnrichConfig, FetchConfig, NLPConfig, load_config
from enrich.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path


def test_defaults_are_valid() -> None:
    config = EnrichConfig()
    assert config == EnrichConfig.from_mapping({})
    assert config.aimd.initial is None
    assert config.frontier.max_pending == 50_000
    assert config.nlp.executor == "thread"
    assert config.nlp.model == "en_core_web_sm"
    # a round trip through plain data gives the same config
    assert EnrichConfig.from_mapping(config.model_dump()) == config


def test_config_is_frozen() -> None:
    config = EnrichConfig()
    with pytest.raises(pydantic.ValidationError):
        config.fetch.timeout_s = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("data", "key", "hint"),
    [
        ({"fetch": {"max_concurency": 5}}, "fetch.max_concurency", "unknown key"),
        ({"fetsh": {}}, "fetsh", "unknown key"),
        ({"nlp": {"workers": "many"}}, "nlp.workers", "'many'"),
        ({"fetch": {"timeout_s": "soon"}}, "fetch.timeout_s", "'soon'"),
        ({"fetch": {"max_concurrency": -1}}, "fetch.max_concurrency", "-1"),
        ({"frontier": {"max_pending": 0}}, "frontier.max_pending", "0"),
        ({"nlp": {"executor": "fork"}}, "nlp.executor", "'fork'"),
        ({"nlp": {"max_chars": 10}}, "nlp.max_chars", "10"),
        ({"aimd": {"decrease_factor": 1.0}}, "aimd.decrease_factor", "1.0"),
        ({"output": {"batch_size": 0}}, "output.batch_size", "0"),
        ({"fetch": 5}, "fetch", "dictionary"),
    ],
)
def test_invalid_values_name_the_dotted_key(data: dict[str, Any], key: str, hint: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        EnrichConfig.from_mapping(data)
    message = str(excinfo.value)
    assert message.startswith("invalid configuration:")
    assert f"\n  {key}: " in message
    assert hint in message
    assert isinstance(excinfo.value, ValueError)  # callers that catch ValueError catch it too
    assert isinstance(excinfo.value.__cause__, pydantic.ValidationError)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as excinfo:
        EnrichConfig.from_mapping({"fetch": {"retries": -1, "nope": 1}, "nlp": {"workers": 0}})
    lines = str(excinfo.value).splitlines()[1:]
    assert sorted(line.split(":")[0].strip() for line in lines) == ["fetch.nope", "fetch.retries", "nlp.workers"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"backoff_base_s": 60, "backoff_cap_s": 30}, "backoff_base_s (60.0) must not exceed backoff_cap_s (30.0)"),
    ],
)
def test_bounds_crossing_each_other_are_rejected(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        EnrichConfig.from_mapping({"fetch": data})
    text = str(excinfo.value)
    # a cross-field rule belongs to the section: the line names it, then both keys
    assert "\n  fetch: " in text
    assert message in text


def test_base_equal_to_cap_is_fine() -> None:
    assert FetchConfig(backoff_base_s=7, backoff_cap_s=7).backoff_cap_s == 7


def test_full_user_agent() -> None:
    assert FetchConfig().full_user_agent == FetchConfig().user_agent
    assert FetchConfig(contact="ops@example.org").full_user_agent.endswith("contact: ops@example.org")


# --- YAML files ---------------------------------------------------------------------------------------------------


def test_load_config_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "run.yml"
    path.write_text(
        "fetch:\n  max_concurrency: 20\n  timeout_s: 5\nnlp:\n  executor: process\n  entity_labels: [PERSON, ORG]\n"
        "output:\n  path: out/records.jsonl\n",
        encoding="utf-8",
    )
    config = load_config(path)
    assert config.fetch.max_concurrency == 20
    assert config.fetch.timeout_s == 5.0
    assert config.nlp.executor == "process"
    assert config.nlp.entity_labels == ("PERSON", "ORG")
    assert str(config.output.path) == "out/records.jsonl"
    assert config.aimd == EnrichConfig().aimd  # untouched sections keep their defaults


@pytest.mark.parametrize("text", ["", "# only a comment\n", "~\n"])
def test_empty_yaml_gives_defaults(tmp_path: Path, text: str) -> None:
    path = tmp_path / "empty.yml"
    path.write_text(text, encoding="utf-8")
    assert load_config(path) == EnrichConfig()


def test_bad_yaml(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text("fetch:\n  timeout_s: [1, 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.yml is not valid YAML"):
        load_config(path)


@pytest.mark.parametrize(("text", "kind"), [("- fetch\n- nlp\n", "list"), ("just a string\n", "str"), ("3\n", "int")])
def test_yaml_that_is_not_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    path = tmp_path / "list.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=f"must hold a mapping of sections, not {kind}$"):
        load_config(path)


def test_yaml_with_an_unknown_key(tmp_path: Path) -> None:
    path = tmp_path / "typo.yml"
    path.write_text("nlp:\n  modle: en_core_web_sm\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"nlp\.modle: unknown key"):
        load_config(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read config file .*nowhere\.yml"):
        load_config(tmp_path / "nowhere.yml")


# --- replace ------------------------------------------------------------------------------------------------------


def test_replace_changes_only_what_is_given() -> None:
    config = EnrichConfig()
    changed = config.replace(fetch={"timeout_s": 5}, nlp={"enabled": False, "workers": 2})
    assert changed.fetch.timeout_s == 5.0
    assert changed.nlp == NLPConfig(enabled=False, workers=2)
    assert changed.fetch.max_concurrency == config.fetch.max_concurrency
    assert changed.output == config.output
    assert config.fetch.timeout_s == 30.0  # the original is untouched
    assert config.replace() == config


def test_replace_validates_again() -> None:
    with pytest.raises(ConfigError, match=r"fetch\.timeout_s"):
        EnrichConfig().replace(fetch={"timeout_s": 0})
    with pytest.raises(ConfigError, match=r"fetch: .*backoff_base_s \(60.0\) must not exceed backoff_cap_s \(30.0\)"):
        EnrichConfig().replace(fetch={"backoff_base_s": 60})
    with pytest.raises(ConfigError, match=r"nlp\.nope: unknown key"):
        EnrichConfig().replace(nlp={"nope": 1})


def test_replace_unknown_section() -> None:
    with pytest.raises(ConfigError, match=r"unknown config section 'nlq'; allowed: fetch, aimd, frontier, politeness"):
        EnrichConfig().replace(nlq={"enabled": False})
