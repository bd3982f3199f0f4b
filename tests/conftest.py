"""Shared fixtures: a temp OHLORA_HOME for every test, fakes, and a tiny random Gemma 3 model."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from ohlora.decoding.generator import GenerationResult
from ohlora.memory.encoder import l2_normalize


@pytest.fixture(autouse=True)
def ohlora_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("OHLORA_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def prepared(tmp_path_factory):
    """A home with the real default models prepared (`ohlora prepare`, twice: the second is
    cached); (home, first run, second run). For the slow tests."""
    import os
    import subprocess
    import sys

    home = tmp_path_factory.mktemp("shared-home")
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "OHLORA_HOME": str(home)}
    runs = []
    for _ in range(2):
        r = subprocess.run([sys.executable, "-m", "ohlora", "prepare"], capture_output=True, text=True, env=env,
                           timeout=1200)
        assert r.returncode == 0, r.stderr[-2000:]
        runs.append(r)
    return home, runs[0], runs[1]


@pytest.fixture
def home(prepared, ohlora_home):
    """This test's own home, its models those of `prepared`."""
    ohlora_home.mkdir(parents=True, exist_ok=True)
    (ohlora_home / "models").symlink_to(prepared[0] / "models", target_is_directory=True)
    return ohlora_home


class FakeGenerator:
    """Scripted replies (llm's MockModel habit). Records every prompt it was given."""

    def __init__(self, replies: list[str] | None = None, chunk: int = 2):
        self.replies = list(replies or [])
        self.prompts: list[str] = []
        self.chunk = chunk

    def enqueue(self, *replies: str) -> "FakeGenerator":
        self.replies.extend(replies)
        return self

    def generate(self, prompt, *, stop_phrase, max_new_tokens, temperature, on_text=None, loop_guard=None):
        self.prompts.append(prompt)
        text = self.replies.pop(0) if self.replies else ""
        if on_text:
            for i in range(0, len(text), self.chunk):
                on_text(text[i:i + self.chunk])
        reason = "stop" if stop_phrase in text else "length"
        return GenerationResult(text, reason, len(text))


class KeywordEncoder:
    """One-hot over keywords (sentence-transformers' fake-encoder habit); counts what it encodes."""

    def __init__(self, keywords: list[list[str]], id: str = "keyword-fake"):
        self.groups = keywords
        self.id = id
        self.encoded: list[str] = []

    def encode(self, texts):
        self.encoded.extend(texts)
        out = np.zeros((len(texts), len(self.groups) + 1), dtype=np.float32)
        for r, t in enumerate(texts):
            for c, words in enumerate(self.groups):
                if any(w in t for w in words):
                    out[r, c] = 1.0
            if not out[r].any():
                out[r, -1] = 1.0  # "unrelated" direction
        return l2_normalize(out)

    def encode_query(self, texts):
        return self.encode(texts)


@pytest.fixture
def fake_generator():
    return FakeGenerator()


@pytest.fixture
def keyword_encoder():
    return KeywordEncoder([["일정", "발표", "떨려", "면접"], ["음식", "먹", "떡볶이", "배고"], ["날씨", "비", "우산"]])


CORPUS = [
    "안녕 나는 오로라야 반가워", "나 내일 면접 있어", "오늘 비 온다 우산 챙겨", "좋아하는 음식은 마라탕이야",
    "[오늘 일정: 발표] 나 떨려 ### 답변: 잘할 거야! (답변 종료)", "[내일 일정: 면접] 우와 떨리겠다 😊",
    "너 이름이 뭐야? 나는 오로라! 장원영 팬이야", "바보 멍청이 그런 말은 하지 마", "주말에 뭐 해? 음악 들을 거야 🎵",
    "hello world 123 !?.,:()[]",
]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer random-weight Gemma 3 with a byte-level BPE tokenizer trained on a few lines."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, PreTrainedTokenizerFast

    out = tmp_path_factory.mktemp("tiny-gemma3")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<pad>", "<bos>", "<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 3, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")
    fast.padding_side = "left"
    torch.manual_seed(0)
    config = Gemma3TextConfig(
        vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=32, max_position_embeddings=512,
        sliding_window=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )
    Gemma3ForCausalLM(config).save_pretrained(out)
    fast.save_pretrained(out)
    return out


def strip_ansi(s: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", s)
