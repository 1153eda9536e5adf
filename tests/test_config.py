import pytest

from symgen.config import ConfigError, apply_overrides, merge, parse_override, resolve_config


def test_defaults_have_model_section():
    cfg = resolve_config("flow")
    assert cfg["model"]["name"] == "flow"
    assert cfg["train"]["steps"] > 0


def test_override_types_and_nesting():
    cfg = resolve_config("flow", overrides=["train.steps=400", "train.grad_clip=1.5", "data.name=moons"])
    assert cfg["train"]["steps"] == 400 and isinstance(cfg["train"]["steps"], int)
    assert cfg["train"]["grad_clip"] == 1.5
    assert cfg["data"]["name"] == "moons"


def test_unknown_key_suggests_closest():
    with pytest.raises(ConfigError, match="did you mean 'train.steps'"):
        resolve_config("flow", overrides=["train.stepz=3"])


def test_unknown_nested_key_in_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  log_evry: 3\n")
    with pytest.raises(ConfigError, match="train.log_every"):
        resolve_config("flow", f)


def test_wrong_type_names_key():
    with pytest.raises(ConfigError, match="train.steps"):
        resolve_config("flow", overrides=["train.steps=abc"])
    with pytest.raises(ConfigError, match="train.steps"):
        resolve_config("flow", overrides=["train.steps=2.5"])


def test_open_sections_accept_any_key():
    cfg = apply_overrides(resolve_config("flow"), ["model.flow_args.hidden_features=[8, 8]"])
    assert cfg["model"]["flow_args"] == {"hidden_features": [8, 8]}


def test_parse_override_errors():
    with pytest.raises(ConfigError, match="key.sub=value"):
        parse_override("train.steps")
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])


def test_merge_does_not_mutate():
    base = {"a": {"b": 1}}
    out = merge(base, {"a": {"b": 2}})
    assert base["a"]["b"] == 1 and out["a"]["b"] == 2


def test_config_file_model_mismatch(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model:\n  name: nonexistent\n")
    with pytest.raises(ConfigError, match="is for model"):
        resolve_config("flow", f)
