import pytest

from ohlora.config import ChatConfig, load_chat_config
from ohlora.errors import OhloraError


def test_defaults_match_the_original_system():
    c = load_chat_config()
    assert (c.temperature, c.max_new_tokens, c.max_tries) == (0.6, 80, 5)
    # the threshold is the recall policy's own; the plain cosine policy keeps the original's 0.6
    from ohlora.memory.recall import RecallPolicy

    assert c.memory_threshold is None and RecallPolicy().threshold == 0.6


def test_yaml_overrides_defaults_and_flags_override_yaml(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("chat:\n  temperature: 0.3\n  max_new_tokens: 40\n", encoding="utf-8")
    c = load_chat_config(p, temperature=0.9, max_new_tokens=None)
    assert c.temperature == 0.9 and c.max_new_tokens == 40


def test_home_config_is_used_when_present(ohlora_home):
    ohlora_home.mkdir(parents=True, exist_ok=True)
    (ohlora_home / "config.yaml").write_text("memory_threshold: 0.7\n")
    assert load_chat_config().memory_threshold == 0.7


@pytest.mark.parametrize("text,match", [
    ("temprature: 0.5\n", "unknown settings"),
    ("temperature: -1\n", "temperature"),
    ("max_new_tokens: 0\n", "max_new_tokens"),
    ("max_new_tokens: true\n", "max_new_tokens"),
    ("- a\n- b\n", "mapping"),
    ("a: [\n", "not valid YAML"),
])
def test_bad_config_files(tmp_path, text, match):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(OhloraError, match=match):
        load_chat_config(p)


def test_missing_config_file(tmp_path):
    with pytest.raises(OhloraError, match="not found"):
        load_chat_config(tmp_path / "nope.yaml")


def test_flags_are_validated_too():
    with pytest.raises(OhloraError, match="memory_threshold"):
        load_chat_config(memory_threshold="high")
    with pytest.raises(OhloraError, match="guard_blocks"):
        load_chat_config(guard_blocks=[0, -5])
    assert ChatConfig(temperature=0).temperature == 0
