"""The native decode step (ohlora/decoding/gemma3_step.c) against LeanGemma3's PyTorch step on a
tiny random Gemma 3: same hidden states and logits token by token (fp32, fp16, bf16 weights,
past the sliding window, with a prefix reused, on one and two threads), the build cached once
per machine, and the fallbacks when no compiler is there."""

from __future__ import annotations

import pytest
import torch

from ohlora.decoding.fast import FastGenerator
from ohlora.decoding.lean_gemma3 import LeanGemma3
from ohlora.decoding.native_step import NativeStep, build_library, compiler, load_library, native_library
from ohlora.errors import OhloraError
from ohlora.models import load_base, resolve_base

pytestmark = pytest.mark.skipif(compiler() is None, reason="no C compiler here")


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_base(resolve_base(str(tiny_model_dir)), device="cpu")


@pytest.fixture
def lib(ohlora_home):
    return load_library(build_library())


def _head(model):
    return model.get_output_embeddings().weight.detach()[:300]  # (V', H): a restricted head


@pytest.mark.parametrize("dtype, atol", [(torch.float32, 1e-4), (torch.float16, 2e-2), (torch.bfloat16, 5e-2)])
@pytest.mark.parametrize("threads", [1, 2])
def test_native_steps_match_the_pytorch_steps(tiny, lib, dtype, atol, threads):
    """100 tokens through a 64-token sliding window: prompt in PyTorch, then one token at a time
    in C and in PyTorch from the same cache state."""
    model, tok = tiny
    lean = LeanGemma3(model.model, weight_dtype=dtype)
    head = _head(model)
    native = NativeStep(lib, lean, head)
    torch.manual_seed(1)
    ids = torch.randint(5, len(tok), (100,))
    with torch.inference_mode():
        ref_cache, ours_cache = lean.new_cache(110), lean.new_cache(110)
        lean.forward(ids[:20], ref_cache)
        lean.forward(ids[:20], ours_cache)
        native.threads(threads)
        try:
            for t in range(20, 100):
                h_ref = lean.forward(ids[t:t + 1], ref_cache)  # (H,)
                logits = native.step(int(ids[t]), ours_cache)  # (1, V')
                assert ours_cache["len"] == ref_cache["len"] == t + 1
                assert torch.allclose(native.hidden, h_ref, atol=atol, rtol=atol), t
                ref_logits = h_ref.to(dtype).float() @ head.to(dtype).float().T
                assert torch.allclose(logits[0], ref_logits, atol=atol * 10, rtol=atol), t
        finally:
            native.threads(1)
    # the C step wrote the same keys and values into the cache as PyTorch
    assert torch.allclose(ours_cache["k"][:, :, :100], ref_cache["k"][:, :, :100], atol=atol)
    assert torch.allclose(ours_cache["v"][:, :, :100], ref_cache["v"][:, :, :100], atol=atol)


def test_fast_generator_with_the_native_step_answers_as_with_pytorch(tiny, ohlora_home):
    """Greedy, fp32 weights: the same text through the native and the PyTorch step, a second
    call reusing the first one's prefix, and the writer's session interface alike."""
    model, tok = tiny
    ids = list(range(len(tok)))
    native = FastGenerator(model, tok, ids, weights="fp32", kernel="native")
    plain = FastGenerator(model, tok, ids, weights="fp32", kernel="torch")
    assert native.step_kernel == "native" and plain.step_kernel == "torch"
    for prompt in ["안녕 ### 답변: ", "안녕 ### 답변: 나는 오로라 ### 답변: "]:
        a = native.generate(prompt, stop_phrase="\x00", max_new_tokens=25, temperature=0)
        b = plain.generate(prompt, stop_phrase="\x00", max_new_tokens=25, temperature=0)
        assert a.text == b.text and a.n_tokens == b.n_tokens
    assert native.reused_tokens > 0  # the second prompt started from the first one's cache
    with native.session("나 내일 면접 있어", 5) as s1, plain.session("나 내일 면접 있어", 5) as s2:
        for _ in range(5):
            l1, l2 = s1.logits(), s2.logits()
            assert torch.allclose(l1, l2, atol=1e-3)
            s1.advance(int(l1.argmax()))
            s2.advance(int(l1.argmax()))


def test_the_library_is_built_once_per_machine(ohlora_home, monkeypatch):
    first = build_library()
    assert first.parent == ohlora_home / "kernels" and first.suffix == ".so"
    stamp = first.stat().st_mtime_ns
    monkeypatch.setattr("ohlora.decoding.native_step._compile", lambda *a, **k: pytest.fail("built twice"))
    assert build_library() == first and first.stat().st_mtime_ns == stamp


def test_without_a_compiler_auto_falls_back_and_native_is_one_line(ohlora_home, monkeypatch, tiny):
    monkeypatch.setenv("CC", "no-such-cc")
    notes = []
    assert native_library("auto", notes.append) is None
    assert len(notes) == 1 and "no C compiler" in notes[0] and "PyTorch" in notes[0]
    with pytest.raises(OhloraError, match="native decode step is not available: no C compiler"):
        native_library("native")
    with pytest.raises(OhloraError, match="choose one of auto, native, torch"):
        native_library("fast")
    model, tok = tiny
    gen = FastGenerator(model, tok, None, weights="fp32", kernel="auto")
    assert gen.step_kernel == "torch"
    assert gen.generate("안녕", stop_phrase="\x00", max_new_tokens=3, temperature=0).n_tokens == 3


def test_a_failing_build_is_one_line_and_leaves_no_file(ohlora_home, monkeypatch):
    import subprocess

    def broken(cc, src, out, arch):
        return subprocess.CompletedProcess([cc], 1, "", "gemma3_step.c:1: error: something\n")

    monkeypatch.setattr("ohlora.decoding.native_step._compile", broken)
    with pytest.raises(OhloraError, match="could not build gemma3_step.c: gemma3_step.c:1: error: something"):
        native_library("native")
    assert not list((ohlora_home / "kernels").glob("*"))


# -- the real default model (slow) -----------------------------------------------------------------
@pytest.mark.slow
def test_native_step_on_the_shipped_chat_keeps_the_full_models_answers(home):
    """Gemma 3 270M + the shipped adapter, fp16 weights in the native step: teacher-forced top-1
    agreement with the full fp32 model >= 99% on 6 validation answers (bench chat: 100% on 12),
    and the same greedy answers as the fp32 PyTorch step."""
    from pathlib import Path

    from ohlora.bench.chat import DecodePath, agreement, fast_forced
    from ohlora.config import ChatConfig
    from ohlora.datasets.sft import load_dataset, spread_rows
    from ohlora.paths import bundled
    from ohlora.runtime import build_runtime

    rt = build_runtime(ChatConfig(memory_encoder="none", memory_writer="chat", guard="none", summary_adapter="none",
                                  decode_kernel="native", decode_threads=1), log=lambda m: None)
    gen = rt.engine.generator
    assert gen.step_kernel == "native" and gen.weight_dtype == torch.float16
    plain = FastGenerator(gen.model, gen.tokenizer, gen.ids.tolist(), adapter=gen.adapter, weights="fp32",
                          kernel="torch")
    fmt, card = rt.engine.prompt_format, rt.card
    rows = spread_rows(load_dataset(Path(bundled("data", "sft", "valid.csv"))), 6)
    same = 0
    for r in rows:
        p = r.prompt(fmt, card)
        a = gen.generate(p, stop_phrase=fmt.stop_phrase, max_new_tokens=40, temperature=0)
        b = plain.generate(p, stop_phrase=fmt.stop_phrase, max_new_tokens=40, temperature=0)
        same += a.text == b.text
    assert same >= 5, f"{same}/6 identical greedy answers"
    path = DecodePath("native", gen, 0, forced=fast_forced(gen))
    agreement([path], gen.model, gen.tokenizer, gen.adapter, rows, fmt, card)
    assert path.stats["agreement"] >= 0.99, path.stats
    rt.store.close()


def test_activations_beyond_fp16_keep_fp16_weights_in_the_native_step(tiny_model_dir, ohlora_home):
    """A layer-0 MLP scaled by 1e4 sends activations past fp16's range: the PyTorch step must go
    back to fp32 weights (test_fast_generation), the native step (fp32 activations) need not."""
    model, tok = load_base(resolve_base(str(tiny_model_dir)), device="cpu")
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight.mul_(1e4)
        model.model.layers[0].mlp.gate_proj.weight.mul_(1e4)
    prompt = "안녕 ### 답변: "
    ref = FastGenerator(model, tok, None, weights="fp32", kernel="torch").generate(
        prompt, stop_phrase="\x00", max_new_tokens=10, temperature=0)
    native = FastGenerator(model, tok, None, weights="fp16", kernel="native")
    out = native.generate(prompt, stop_phrase="\x00", max_new_tokens=10, temperature=0)
    assert native.lean().half_overflow and native.weight_dtype == torch.float16 and native.step_kernel == "native"
    assert out.text == ref.text


def test_a_final_logit_softcap_is_applied_to_the_native_steps_logits(tiny_model_dir, ohlora_home):
    """A model with Gemma's final-logit softcap: the native step's logits are capped as
    FastGenerator's own head caps them (same logits along a forced sequence)."""
    model, tok = load_base(resolve_base(str(tiny_model_dir)), device="cpu")
    model.config.final_logit_softcapping = 0.5  # every logit is squeezed into [-0.5, 0.5]
    native = FastGenerator(model, tok, None, weights="fp32", kernel="native")
    plain = FastGenerator(model, tok, None, weights="fp32", kernel="torch")
    assert native.softcap == 0.5
    with native.session("안녕 나는 오로라", 6) as s1, plain.session("안녕 나는 오로라", 6) as s2:
        for t in tok("야 반가워 hello", add_special_tokens=False)["input_ids"][:5]:
            l1, l2 = s1.logits(), s2.logits()
            assert float(l1.abs().max()) <= 0.5 + 1e-6 and torch.allclose(l1, l2, atol=1e-5)
            s1.advance(t)
            s2.advance(t)
