"""The settings layer: every field documented, the README's tables and the trainer YAML's defaults equal to the
declared ones, one parser (unknown keys, aliases), one data-key grammar, and ConfigError naming the key path."""

from __future__ import annotations

import copy
import dataclasses
import logging
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from verl_difficulty import settings
from verl_difficulty.config import CONFIG_DIR, TRAINER_CONFIG_NAME
from verl_difficulty.rewards.multitask import RewardConfigError as ReexportedRewardConfigError
from verl_difficulty.settings import (
    NODES,
    AccuracyFilterConfig,
    ConfigError,
    DivaConfig,
    DivaSettings,
    DurianConfig,
    EntropyShapingConfig,
    G2RPOConfig,
    MultiTaskRewardConfig,
    RewardConfigError,
)
from verl_difficulty.verl_glue.fields import field_for_key, parse_data_key

README = Path(__file__).resolve().parents[1] / "README.md"
YAML = Path(CONFIG_DIR) / f"{TRAINER_CONFIG_NAME}.yaml"
BY_NODE = {cls.NODE: cls for cls in NODES}


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch):
    monkeypatch.setattr(settings, "_WARNED", set())


# ---------------------------------------------------------------------------------------------- documentation


def undocumented(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if not str(f.metadata.get("help", "")).strip()]


@pytest.mark.parametrize("cls", NODES, ids=lambda c: c.NODE)
def test_every_field_has_help(cls):
    assert undocumented(cls) == []


def test_a_field_without_help_is_found():
    @dataclasses.dataclass(frozen=True)
    class Half:
        documented: int = dataclasses.field(default=1, metadata={"help": "what it does"})
        bare: int = 2

    assert undocumented(Half) == ["bare"]


def test_readme_holds_the_generated_tables():
    text = README.read_text(encoding="utf-8")
    assert settings.update_readme(text) == text, (
        "README's settings tables differ from the dataclasses: run "
        "`python -m verl_difficulty.settings --write-readme README.md`")


def test_a_stale_readme_table_is_caught():
    text = README.read_text(encoding="utf-8")
    stale = text.replace("| `kappa` | `0.1` |", "| `kappa` | `0.2` |", 1)
    assert stale != text
    assert settings.update_readme(stale) != stale
    begin = "<!-- settings algorithm.g2rpo:"
    with pytest.raises(ConfigError, match="no block for algorithm.g2rpo"):
        settings.update_readme(text.replace(begin, "<!-- moved"))


def test_markdown_cli_prints_one_table_per_node(capsys):
    assert settings.main(["--markdown"]) == 0
    out = capsys.readouterr().out
    for cls in NODES:
        assert f"<!-- settings {cls.NODE}:" in out and f"<!-- end settings {cls.NODE} -->" in out
    assert "| `include_degenerate_groups` | `false` |" in out  # durian's, under its new name


# ---------------------------------------------------------------------------------------------- the YAML


def _plain_value(value):
    if isinstance(value, tuple):
        return [_plain_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain_value(v) for k, v in value.items()}
    return value


def yaml_mismatches(raw: dict) -> list[str]:
    """(node.key: why) for every YAML value that is not the declared default (or its spelled-out form)."""
    problems = []
    nodes = {f"algorithm.{name}": node for name, node in raw["algorithm"].items()}
    nodes["data.diva"] = raw["data"]["diva"]
    for path, node in nodes.items():
        cls = BY_NODE.get(path)
        if cls is None:
            problems.append(f"{path}: no settings class")
            continue
        declared = {f.name: f for f in dataclasses.fields(cls)}
        for key in sorted(set(declared) ^ set(node)):
            problems.append(f"{path}.{key}: only in {'the class' if key in declared else 'the YAML'}")
        for key in sorted(set(declared) & set(node)):
            f = declared[key]
            expected = f.metadata.get("yaml", settings._declared_default(f))
            if _plain_value(expected) != node[key]:
                problems.append(f"{path}.{key}: YAML {node[key]!r}, declared {expected!r}")
    return problems


def _raw_yaml() -> dict:
    return OmegaConf.to_container(OmegaConf.load(YAML), resolve=False)


def test_yaml_defaults_equal_the_declared_defaults():
    assert yaml_mismatches(_raw_yaml()) == []


def test_a_yaml_default_that_drifts_is_caught():
    raw = _raw_yaml()
    for path, edit in [("durian", lambda n: n.update(epsilon=1e-5)), ("g2rpo", lambda n: n.pop("tie_tolerance")),
                       ("accuracy_filter", lambda n: n.update(bogus=1))]:
        drifted = copy.deepcopy(raw)
        edit(drifted["algorithm"][path])
        assert len(yaml_mismatches(drifted)) == 1


def test_every_algorithm_node_of_ours_is_in_the_yaml():
    ours = {cls.NODE for cls in NODES if cls.NODE.startswith("algorithm.")}
    assert {f"algorithm.{name}" for name in _raw_yaml()["algorithm"]} == ours


# ---------------------------------------------------------------------------------------------- the parser


def test_unknown_key_names_its_full_path_and_the_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) algorithm\.g2rpo\.bogus; valid keys: "
                                          r"include_degenerate_groups, mode, task_key, tie_tolerance"):
        G2RPOConfig.from_algorithm({"g2rpo": {"bogus": 1}})
    with pytest.raises(ConfigError, match=r"unknown key\(s\) data\.diva\.seeds"):
        DivaSettings.from_data_config(OmegaConf.create({"diva": {"seeds": 1}}))
    with pytest.raises(RewardConfigError, match=r"reward\.reward_kwargs\.w_fmtt"):
        MultiTaskRewardConfig.from_mapping({"w_fmtt": 0.1})


def test_a_node_that_is_not_a_mapping_is_refused():
    with pytest.raises(ConfigError, match=r"algorithm\.durian must be a mapping"):
        DurianConfig.from_algorithm({"durian": [1, 2]})


def test_omegaconf_dict_and_absent_node_give_the_same_settings():
    assert EntropyShapingConfig.from_algorithm(None) == EntropyShapingConfig()
    assert AccuracyFilterConfig.from_algorithm(OmegaConf.create({"accuracy_filter": {"low": 0.1}})).low == 0.1
    assert DurianConfig.from_algorithm({"durian": {"perceptual_quantiles": [0.2, 0.8]}}).perceptual_quantiles == (0.2,
                                                                                                                  0.8)


def test_diva_node_is_read_under_its_estimators_name_and_the_old_name_with_a_warning(caplog):
    assert DivaConfig.from_algorithm({"diva_grpo": {"kappa": 0.05}}).kappa == 0.05
    with caplog.at_level(logging.WARNING, logger="verl_difficulty.settings"):
        assert DivaConfig.from_algorithm({"diva": {"kappa": 0.02}}).kappa == 0.02
        assert DivaConfig.from_algorithm({"diva": {"kappa": 0.03}}).kappa == 0.03
    assert caplog.text.count("algorithm.diva is deprecated: rename it to algorithm.diva_grpo") == 1  # once


def test_diva_node_under_both_names_is_an_error():
    with pytest.raises(ConfigError, match=r"algorithm\.diva and algorithm\.diva_grpo are both set"):
        DivaConfig.from_algorithm(OmegaConf.create({"diva": {"kappa": 0.2}, "diva_grpo": {"kappa": 0.1}}))


def test_durian_zero_variance_key_is_a_deprecated_alias(caplog):
    with caplog.at_level(logging.WARNING, logger="verl_difficulty.settings"):
        cfg = DurianConfig.from_algorithm({"durian": {"include_zero_variance_groups": True}})
    assert cfg.include_degenerate_groups is True
    assert "algorithm.durian.include_zero_variance_groups is deprecated" in caplog.text
    with pytest.raises(ConfigError, match=r"include_zero_variance_groups=True and "
                                          r"algorithm\.durian\.include_degenerate_groups=False are both set"):
        DurianConfig.from_algorithm({"durian": {"include_zero_variance_groups": True,
                                                "include_degenerate_groups": False}})


def test_reward_config_error_is_a_config_error_and_keeps_its_import_path():
    assert issubclass(RewardConfigError, ConfigError) and issubclass(ConfigError, ValueError)
    assert ReexportedRewardConfigError is RewardConfigError


# ---------------------------------------------------------------------------------------------- data keys


@pytest.mark.parametrize("key, parsed", [
    ("data_source", ("data_source", None)),
    ("acc", ("acc", None)),
    ("extra_info.problem_type", ("extra_info", "problem_type")),
    ("extra_info.a.b", ("extra_info", "a.b")),
])
def test_data_key_grammar_accepts(key, parsed):
    assert parse_data_key(key) == parsed
    assert field_for_key(key) == parsed[0]


@pytest.mark.parametrize("key", ["", " ", "extra_info.", "extra_info", "meta.task", " data_source", 3])
def test_data_key_grammar_refuses_with_the_key_path(key):
    for cls, attr in [(G2RPOConfig, "task_key"), (EntropyShapingConfig, "task_key"), (DurianConfig, "entropy_key"),
                      (DivaConfig, "problem_id_key"), (DivaConfig, "difficulty_key")]:
        with pytest.raises(ConfigError, match=rf"{cls.NODE}\.{attr}="):
            settings.parse(cls, {attr: key})
    with pytest.raises(RewardConfigError, match=r"reward\.reward_kwargs\.task_key="):
        MultiTaskRewardConfig.from_mapping({"task_key": key})


def test_reward_task_key_takes_only_what_the_reward_function_sees():
    assert MultiTaskRewardConfig.from_mapping({"task_key": "extra_info.problem_type"}).task_key \
        == "extra_info.problem_type"
    with pytest.raises(RewardConfigError, match=r"task_key='acc'.*sees no other column"):
        MultiTaskRewardConfig.from_mapping({"task_key": "acc"})


def test_diva_dataset_keys_read_extra_info_and_take_the_bare_spelling_with_a_warning(caplog):
    settings_ = DivaSettings.from_data_config(OmegaConf.create({"diva": {"problem_id_key": "extra_info.pid"}}))
    assert settings_.problem_id_field == "pid" and settings_.question_field == "question"
    with caplog.at_level(logging.WARNING, logger="verl_difficulty.settings"):
        bare = DivaSettings.from_data_config(OmegaConf.create({"diva": {"problem_id_key": "pid"}}))
    assert bare.problem_id_key == "extra_info.pid" and bare.problem_id_field == "pid"
    assert "data.diva.problem_id_key='pid'" in caplog.text


def test_diva_dataset_seed_defaults_to_data_seed_then_zero():
    assert DivaSettings.from_data_config(OmegaConf.create({"seed": 7})).seed == 7
    assert DivaSettings.from_data_config(None).seed == 0 and DivaSettings().seed == 0


# ---------------------------------------------------------------------------------------------- errors name keys

BAD_VALUES = ["???", -1, 0, 1e308, float("nan"), True, [1, 2, 3], {"a": 1}, None, ""]


def _build(cls, key, value):
    if cls is MultiTaskRewardConfig:
        extra = {"length_shaping": True, "max_response_length": 64} if key == "length_thresholds" else {}
        return MultiTaskRewardConfig.from_mapping({key: value, **extra})
    if cls is DivaSettings:
        return settings.parse(cls, {key: value})
    return cls.from_algorithm({cls.NODE.split(".", 1)[1]: {key: value}})


CASES = [(cls, f.name, value) for cls in NODES for f in dataclasses.fields(cls)
         if f.name != "scorer_options" for value in BAD_VALUES]


@pytest.mark.parametrize("cls, key, value", CASES,
                         ids=[f"{c.NODE}.{k}={v!r}" for c, k, v in CASES])
def test_every_refused_value_is_a_config_error_naming_the_key_path(cls, key, value):
    try:
        _build(cls, key, value)
    except ConfigError as error:
        message = str(error)
        named = [f.name for f in dataclasses.fields(cls) if f"{cls.NODE}.{f.name}" in message]
        assert cls.NODE in message and (key in message or named), message  # the key, or the one it depends on
    # anything else (TypeError, FloatingPointError, ...) fails the test: one exception type for settings


def test_the_bad_values_do_reach_the_checks():
    refused = 0
    for cls, key, value in CASES:
        try:
            _build(cls, key, value)
        except ConfigError:
            refused += 1
    assert refused > len(CASES) // 2
