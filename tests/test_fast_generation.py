"""FastGenerator on a tiny random Gemma 3: same greedy text as HF generate with the full head."""

import pytest

from ohlora.fast_generation import FastGenerator, build_head_vocab, load_head_vocab, save_head_vocab
from ohlora.generation import HFGenerator
from ohlora.models import load_base, resolve_base


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_base(resolve_base(str(tiny_model_dir)), device="cpu")


@pytest.mark.parametrize("prompt", ["안녕 ### 답변: ", "나 내일 면접 있어 ### 답변: ", "hello"])
def test_greedy_matches_hf_generate_with_the_full_vocabulary(tiny, prompt):
    model, tok = tiny
    ref = HFGenerator(model, tok).generate(prompt, stop_phrase="\x00", max_new_tokens=20, temperature=0)
    full = FastGenerator(model, tok, list(range(len(tok)))).generate(prompt, stop_phrase="\x00", max_new_tokens=20,
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
