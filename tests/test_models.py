"""Model resolution and loading, and HFGenerator on a tiny random Gemma 3 (real transformers code)."""

import pytest

from ohlora.decoding.generator import HFGenerator
from ohlora.errors import OhloraError
from ohlora.memory.encoder import HiddenStateEncoder
from ohlora.models import PRESETS, load_base, resolve_base


def test_presets_cover_the_reference_models():
    assert PRESETS["polyglot-ko-1.3b"].source == "EleutherAI/polyglot-ko-1.3b"
    assert PRESETS["polyglot-ko-1.3b"].lora_targets == ("query_key_value",)
    assert PRESETS["gemma-2-2b"].source == "google/gemma-2-2b"
    assert PRESETS["gemma-3-270m"].source == "embedded"


def test_unknown_and_invalid_models_give_one_clear_error(tmp_path):
    with pytest.raises(OhloraError, match="unknown model 'no-such-model'"):
        resolve_base("no-such-model")
    with pytest.raises(OhloraError, match="not a model directory"):
        resolve_base(str(tmp_path))
    assert resolve_base("EleutherAI/polyglot-ko-1.3b").location == "EleutherAI/polyglot-ko-1.3b"


def test_hub_id_that_cannot_be_fetched_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OhloraError, match="cannot load model 'nobody/no-such-model-xyz'"):
        load_base(resolve_base("nobody/no-such-model-xyz"))


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_base(resolve_base(str(tiny_model_dir)), device="cpu")


def test_local_dir_loads_through_the_same_path(tiny):
    model, tok = tiny
    assert type(model).__name__ == "Gemma3ForCausalLM" and tok.pad_token_id is not None


def test_generation_stops_on_decoded_stop_phrase(tiny):
    """Pick a stop phrase from the model's own greedy text: generation must end right after it."""
    gen = HFGenerator(*tiny)
    free = gen.generate("안녕 ### 답변: ", stop_phrase="\x00never", max_new_tokens=30, temperature=0)
    assert free.finish_reason == "length" and free.n_tokens == 30
    stop = free.text[8:11]  # a piece from the middle, whatever its token boundaries
    assert stop.strip()
    cut = gen.generate("안녕 ### 답변: ", stop_phrase=stop, max_new_tokens=30, temperature=0)
    assert cut.finish_reason == "stop" and stop in cut.text and cut.n_tokens < 30
    assert free.text.startswith(cut.text)  # same greedy path, ended early
    one_less = gen.generate("안녕 ### 답변: ", stop_phrase="\x00never", max_new_tokens=cut.n_tokens - 1,
                            temperature=0)
    assert stop not in one_less.text  # it ended at the first token that completed the phrase


def test_streamed_text_equals_the_result(tiny):
    gen = HFGenerator(*tiny)
    chunks = []
    r = gen.generate("오늘 날씨", stop_phrase="\x00", max_new_tokens=12, temperature=0.6, on_text=chunks.append)
    assert "".join(chunks) == r.text and len(chunks) > 1


def test_hidden_state_encoder_is_normalized_and_batch_independent(tiny):
    enc = HiddenStateEncoder(*tiny, batch_size=2)
    texts = ["[오늘 일정: 발표]", "나 떨려", "좋아하는 음식은 마라탕이야 진짜로"]
    v = enc.encode(texts)
    assert v.shape == (3, 64)
    assert abs(float((v ** 2).sum(1).max()) - 1) < 1e-5
    single = enc.encode([texts[2]])  # padding in a batch must not change the vector
    assert abs(float(v[2] @ single[0]) - 1) < 1e-4
