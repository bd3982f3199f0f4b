"""FastGenerator on a tiny random Gemma 3: same greedy text as HF generate with the full head."""

import pytest

from ohlora.decoding.fast import FastGenerator
from ohlora.decoding.generator import HFGenerator
from ohlora.decoding.head import build_head_vocab, load_head_vocab, save_head_vocab
from ohlora.models import load_base, resolve_base


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_base(resolve_base(str(tiny_model_dir)), device="cpu")


@pytest.mark.parametrize("prompt", ["안녕 ### 답변: ", "나 내일 면접 있어 ### 답변: ", "hello"])
def test_greedy_matches_hf_generate_with_the_full_vocabulary(tiny, prompt):
    model, tok = tiny
    ref = HFGenerator(model, tok).generate(prompt, stop_phrase="\x00", max_new_tokens=20, temperature=0)
    full = FastGenerator(model, tok, list(range(len(tok))), weights="fp32").generate(prompt, stop_phrase="\x00", max_new_tokens=20,
                                                                      temperature=0)
    assert full.text == ref.text and full.n_tokens == ref.n_tokens


def test_stop_phrase_streaming_and_subset(tiny, tmp_path):
    model, tok = tiny
    gen = FastGenerator(model, tok, None)
    free = gen.generate("안녕 ### 답변: ", stop_phrase="\x00", max_new_tokens=30, temperature=0)
    stop = free.text[8:11]
    chunks = []
    cut = gen.generate("안녕 ### 답변: ", stop_phrase=stop, max_new_tokens=30, temperature=0, on_text=chunks.append)
    assert cut.finish_reason == "stop" and free.text.startswith(cut.text) and "".join(chunks) == cut.text
    ids = build_head_vocab(tok, ["오로라 마라탕"])
    assert 0 < len(ids) < len(tok) and set(tok("오로라 마라탕", add_special_tokens=False)["input_ids"]) <= set(ids)
    save_head_vocab(ids, tmp_path)
    assert load_head_vocab(tmp_path) == ids
    sub = FastGenerator(model, tok, ids)
    out = sub.generate("안녕", stop_phrase="\x00", max_new_tokens=10, temperature=0.8)
    produced = tok(out.text, add_special_tokens=False)["input_ids"]
    assert out.n_tokens == 10 and produced  # sampling works on the subset


def test_lean_gemma3_matches_the_hf_forward(tiny):
    import torch

    from ohlora.decoding.lean_gemma3 import LeanGemma3

    model, tok = tiny
    lean = LeanGemma3(model.model)
    ids = tok("안녕 나는 오로라야 반가워 hello world", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        ref = model.model(input_ids=ids, output_hidden_states=True).last_hidden_state[0]  # (T, H)
        cache = lean.new_cache(ids.shape[1] + 4)
        first = lean.forward(ids[0, :5], cache)  # prefill part, then one token at a time
        assert torch.allclose(first, ref[4], atol=1e-4)
        for t in range(5, ids.shape[1]):
            h = lean.forward(ids[0, t:t + 1], cache)
            assert torch.allclose(h, ref[t], atol=1e-4), t


def test_lean_sliding_window_matches_hf(tiny_model_dir):
    """The tiny config has a 64-token window: a 100-token prompt exercises the band mask."""
    import torch

    from ohlora.decoding.lean_gemma3 import LeanGemma3

    model, tok = load_base(resolve_base(str(tiny_model_dir)), device="cpu")
    ids = torch.randint(5, len(tok), (1, 100))
    with torch.no_grad():
        ref = model.model(input_ids=ids).last_hidden_state[0]
        lean = LeanGemma3(model.model)
        cache = lean.new_cache(110)
        assert torch.allclose(lean.forward(ids[0, :90], cache), ref[89], atol=1e-4)
        for t in range(90, 100):
            assert torch.allclose(lean.forward(ids[0, t:t + 1], cache), ref[t], atol=1e-4)


def test_lean_merges_the_chat_adapter(tiny_model_dir):
    from peft import LoraConfig, get_peft_model

    model, tok = load_base(resolve_base(str(tiny_model_dir)), device="cpu")
    peft = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj", "gate_proj", "down_proj"],
                                            init_lora_weights=False), adapter_name="chat")
    hf = HFGenerator(peft, tok, adapter="chat").generate("안녕 ### 답변: ", stop_phrase="\x00", max_new_tokens=15,
                                                          temperature=0)
    fast = FastGenerator(peft, tok, None, adapter="chat", weights="fp32")
    assert fast.lean() is not None
    out = fast.generate("안녕 ### 답변: ", stop_phrase="\x00", max_new_tokens=15, temperature=0)
    assert out.text == hf.text
    bare = HFGenerator(peft, tok, adapter=None).generate("안녕 ### 답변: ", stop_phrase="\x00", max_new_tokens=15,
                                                          temperature=0)
    assert bare.text != hf.text  # the adapter matters, and the lean path applied it


@pytest.mark.parametrize("weights", ["bf16", "fp16"])
def test_half_weights_stay_close_to_fp32_and_every_position_matches(tiny, weights):
    """Half-precision matrices (half the bytes per token) change hidden states by a few percent at
    most here; the real model's top-1 agreement is what `ohlora bench chat` measures."""
    import torch

    from ohlora.decoding.lean_gemma3 import WEIGHT_DTYPES, LeanGemma3

    model, tok = tiny
    ids = tok("안녕 나는 오로라야 반가워 hello world", return_tensors="pt")["input_ids"][0]
    with torch.no_grad():
        fp32 = LeanGemma3(model.model)
        ref = fp32.forward(ids, fp32.new_cache(len(ids)), every_position=True)  # (T, H)
        assert ref.shape == (len(ids), model.config.hidden_size)
        half = LeanGemma3(model.model, weight_dtype=WEIGHT_DTYPES[weights])
        assert half.layers[0]["qkv"].dtype == WEIGHT_DTYPES[weights]
        cache = half.new_cache(len(ids))
        out = torch.stack([half.forward(ids[t:t + 1], cache) for t in range(len(ids))])  # decode one by one
        assert out.dtype == torch.float32
        rel = (out - ref).norm(dim=-1) / ref.norm(dim=-1)
        assert float(rel.max()) < 0.05 and not torch.equal(out, ref)


def test_weights_option(tiny, monkeypatch):
    import torch

    import ohlora.decoding.lean_gemma3 as lg

    model, tok = tiny
    assert FastGenerator(model, tok, None, weights="fp32").weight_dtype == torch.float32
    assert FastGenerator(model, tok, None, weights="fp16").weight_dtype == torch.float16
    assert lg.fastest_half_dtype(rows=64, cols=64, reps=2) in lg.WEIGHT_DTYPES.values()
    monkeypatch.setattr(lg, "fastest_half_dtype", lambda: torch.bfloat16)
    assert FastGenerator(model, tok, None).weight_dtype == torch.bfloat16  # auto: the timed pick
    with pytest.raises(ValueError):
        FastGenerator(model, tok, None, weights="int3")


def test_half_weights_fall_back_to_fp32_when_activations_overflow(tiny_model_dir):
    """A model whose activations leave fp16's range (here: a layer-0 MLP scaled by 1e4) must not
    produce garbage: the prompt's hidden state is checked and the decoder goes back to fp32."""
    import torch

    model, tok = load_base(resolve_base(str(tiny_model_dir)), device="cpu")
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight.mul_(1e4)
        model.model.layers[0].mlp.gate_proj.weight.mul_(1e4)
    ref = FastGenerator(model, tok, None, weights="fp32").generate("안녕 ### 답변: ", stop_phrase="\x00",
                                                                  max_new_tokens=10, temperature=0)
    half = FastGenerator(model, tok, None, weights="fp16")
    out = half.generate("안녕 ### 답변: ", stop_phrase="\x00", max_new_tokens=10, temperature=0)
    assert half.weight_dtype == torch.float32 and half.lean().weight_dtype == torch.float32
    assert out.text == ref.text  # without the fallback: an empty or garbled answer


class KeptGuard:
    """A LoopGuard that keeps its trackers, to read the token ids a generation produced."""

    def __init__(self, ngram, max_count):
        from ohlora.loop_guard import LoopGuard

        self.guard, self.trackers = LoopGuard(ngram, max_count), []

    def tracker(self):
        self.trackers.append(self.guard.tracker())
        return self.trackers[-1]


def max_ngram_count(ids, n):
    from collections import Counter

    return max(Counter(tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)).values())


@pytest.mark.parametrize("ngram,max_count", [(2, 1), (3, 2), (5, 2)])
@pytest.mark.parametrize("prompt", ["안녕 ### 답변: ", "나 내일 면접 있어 ### 답변: "])
def test_loop_guard_is_the_same_in_both_generators(tiny, prompt, ngram, max_count):
    """The random tiny model loops at once (`웥웥웥...`): with the guard both generators give the
    same greedy text, and no n-gram of the answer comes back more than max_count times."""
    model, tok = tiny
    free = HFGenerator(model, tok).generate(prompt, stop_phrase="\x00", max_new_tokens=40, temperature=0)
    assert max_ngram_count(tok(free.text, add_special_tokens=False)["input_ids"], ngram) > max_count
    hf_guard, fast_guard = KeptGuard(ngram, max_count), KeptGuard(ngram, max_count)
    ref = HFGenerator(model, tok).generate(prompt, stop_phrase="\x00", max_new_tokens=40, temperature=0,
                                           loop_guard=hf_guard)
    fast = FastGenerator(model, tok, list(range(len(tok))), weights="fp32").generate(
        prompt, stop_phrase="\x00", max_new_tokens=40, temperature=0, loop_guard=fast_guard)
    assert fast.text == ref.text != free.text and fast.n_tokens == ref.n_tokens
    ids = fast_guard.trackers[0].ids
    assert len(ids) >= 30 and max_ngram_count(ids, ngram) <= max_count


def test_loop_guard_on_the_restricted_head(tiny):
    """The subset head's rows are not token ids: banned tokens are masked on their rows."""
    model, tok = tiny
    ids = build_head_vocab(tok, ["오로라 마라탕"])
    gen = FastGenerator(model, tok, ids, weights="fp32")
    for temperature in (0, 0.8):
        guard = KeptGuard(2, 1)
        gen.generate("안녕 ### 답변: ", stop_phrase="\x00", max_new_tokens=30, temperature=temperature, loop_guard=guard)
        out = guard.trackers[0].ids
        assert len(out) >= 20 and set(out) <= set(ids) and max_ngram_count(out, 2) == 1


def test_ngram_tracker_counts():
    from ohlora.loop_guard import LoopGuard

    assert LoopGuard(0).tracker() is None
    t = LoopGuard(3, 2).tracker()
    for x in [1, 2, 3, 1, 2, 3, 1, 2]:
        t.push(x)
    assert t.banned() == [3]  # (1, 2, 3) is there twice already
    t = LoopGuard(3, 3).tracker()
    for x in [1, 2, 3, 1, 2, 3, 1, 2]:
        t.push(x)
    assert t.banned() == []


def test_a_shared_prompt_prefix_is_taken_from_the_cache_with_the_same_answers(tiny):
    model, tok = tiny
    turns = ["안녕 ### 답변: ", "안녕 ### 답변: 응 (답변 종료)\n뭐 해? ### 답변: ",
             "안녕 ### 답변: 응 (답변 종료)\n뭐 해? ### 답변: 그냥 (답변 종료)\n나 떨려 ### 답변: ", "전혀 다른 말 ### 답변: "]
    warm = FastGenerator(model, tok, list(range(len(tok))), weights="fp32")
    reused = []
    for prompt in turns:
        a = warm.generate(prompt, stop_phrase="\x00", max_new_tokens=8, temperature=0)
        reused.append(warm.reused_tokens)
        b = FastGenerator(model, tok, list(range(len(tok))), weights="fp32").generate(
            prompt, stop_phrase="\x00", max_new_tokens=8, temperature=0)
        assert a.text == b.text  # a cold generator, same greedy answer
    n = [len(tok(p)["input_ids"]) for p in turns]
    assert reused[0] == 0 and 0 < reused[1] < n[1] and reused[2] >= reused[1]  # the earlier turns are not run again
    assert reused[3] <= 2  # nothing but BOS-like tokens shared with an unrelated prompt
