"""FastGenerator: CPU chat generation with a restricted output head and a lean decode loop.

Where the time goes (Gemma 3 270M, fp32, 2 cores): the tied 262k x 640 output head is half of
every generated token, and `generate()`'s per-token machinery (logits processors, stopping
criteria, full-vocabulary softmax) adds more. Oh-LoRA writes Korean, emoji and a little ASCII, so
the head is restricted to the tokens she can use: every token with Hangul, every symbol, number
and emoji token, short ASCII pieces, and every token of her training data (`head_vocab.json`,
saved beside the adapter). The backbone runs as usual (KV cache, chat adapter active); only the
head and the loop around it change. Greedy output equals the full model's wherever the full
model's top-1 token lies in the subset; `ohlora bench chat` measures how often that is.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager

from ohlora.decoding.generator import GenerationResult
from ohlora.decoding.head import lm_head_of
from ohlora.decoding.prefix_cache import PrefixCache
from ohlora.decoding.threads import decode_threads
from ohlora.models import use_adapter


class HeadDecodeLoop:
    """The decode loop over a (possibly restricted) output head, shared by FastGenerator and the
    llama.cpp engine: sampling with temperature and top-k, the LoopGuard, streaming, the stop
    phrase. A subclass sets `tokenizer`, `eos`, `top_k`, `ids` (the head's full-vocabulary ids,
    or None for the full head) and `_row` (full id -> head row)."""

    def _pick(self, logits, temperature: float, generator=None) -> int:
        # lazy: torch loads only when this runs
        import torch

        if temperature <= 0:
            idx = int(logits.argmax(-1))
        else:
            scaled = logits[0].float() / temperature
            k = min(self.top_k, scaled.shape[-1]) if self.top_k else scaled.shape[-1]
            vals, top = scaled.topk(k)
            idx = int(top[torch.multinomial(torch.softmax(vals, -1), 1, generator=generator)])
        return idx if self.ids is None else int(self.ids[idx])

    def _decode(self, logits, step, max_new_tokens, temperature, stop_phrase, on_text, tracker=None) -> GenerationResult:
        """`logits`: (1, V') for the first new token; `step(token_id)` feeds a token and returns the next (1, V')."""
        tok = self.tokenizer
        out_ids: list[int] = []
        sent, reason = 0, "length"
        for _ in range(max_new_tokens):
            banned = tracker.banned() if tracker else None
            if banned:  # the LoopGuard, on the head's rows (a generated token is always one of them)
                rows = banned if self._row is None else [self._row[t] for t in banned if t in self._row]
                logits[0, rows] = float("-inf")
            nxt = self._pick(logits, temperature)
            if nxt == self.eos:
                reason = "eos"
                break
            out_ids.append(nxt)
            if tracker:
                tracker.push(nxt)
            text = tok.decode(out_ids, skip_special_tokens=True)
            if on_text and not text.endswith("\ufffd") and len(text) > sent:
                on_text(text[sent:])
                sent = len(text)
            if stop_phrase in text:
                reason = "stop"
                break
            if len(out_ids) == max_new_tokens:
                break
            logits = step(nxt)
        text = tok.decode(out_ids, skip_special_tokens=True)
        if on_text and len(text) > sent:
            on_text(text[sent:])
        return GenerationResult(text=text, finish_reason=reason, n_tokens=len(out_ids) + (reason == "eos"))


class FastGenerator(HeadDecodeLoop):
    """Same interface as HFGenerator; samples with temperature and top-k (HF's default k=50)."""

    def __init__(self, model, tokenizer, vocab_ids: list[int] | None, adapter: str | None = None, top_k: int = 50,
                 decode_threads: int | str | None = 1, weights: str = "auto", kernel: str = "torch", log=None):
        # lazy: torch loads only when this runs
        import torch

        from ohlora.decoding.lean_gemma3 import decoder_weight_dtype

        self.model, self.tokenizer, self.adapter, self.top_k = model, tokenizer, adapter, top_k
        # Threads per generated token: a number, "auto" (the cores free when an answer starts, see
        # ohlora/decoding/threads.py) or None (as many as the prompt). The prompt keeps every thread.
        self.decode_threads = decode_threads
        # A named dtype is checked now; "auto" is chosen only when the lean decoder is first built.
        self._weight_dtype = None if weights == "auto" else decoder_weight_dtype(weights)
        # The one-token step: "torch" (LeanGemma3 in PyTorch), "native" (the C step of
        # ohlora/decoding/native_step.py, built once per machine) or "auto" (native where it builds).
        # lazy: torch loads only when this runs
        from ohlora.decoding.native_step import native_library

        self.kernel = kernel
        self._lib = native_library(kernel, log)
        self._native = None  # NativeStep over the lean decoder, built with it
        inner = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.backbone = inner.get_decoder()
        head, self.softcap = lm_head_of(model)
        weight = head.weight.detach()  # (V, H)
        if vocab_ids is None:
            self.ids = None
            self.weight = weight
        else:
            self.ids = torch.tensor(vocab_ids, dtype=torch.long, device=weight.device)
            self.weight = weight[self.ids].contiguous()  # (V', H): a copy, so memory grows by V'/V of the head
        self._row = None if vocab_ids is None else {int(t): r for r, t in enumerate(vocab_ids)}  # full id -> head row
        self.eos = tokenizer.eos_token_id
        self._lean = None  # LeanGemma3, built on first use for Gemma 3 text models
        self.prefix = PrefixCache()  # the last call's KV cache, reused for the next prompt's shared prefix

        # transformers 5.2x renames `past_key_values` to `cache`; use whichever this version has.
        self.cache_kw = "cache" if "cache" in inspect.signature(self.backbone.forward).parameters else "past_key_values"

    def _logits(self, h):  # h: (1, H) -> (1, V')
        logits = h @ self.weight.T
        if self.softcap:
            logits = (logits / self.softcap).tanh() * self.softcap
        return logits

    @property
    def weight_dtype(self):
        """The lean decoder's matrix dtype: the one asked for; for "auto" fp16 with the native
        step (it converts in registers: half the bytes on any CPU), else the fastest on this CPU."""
        # lazy: torch loads only when this runs
        import torch

        from ohlora.decoding.lean_gemma3 import fastest_half_dtype

        if self._weight_dtype is None:
            self._weight_dtype = torch.float16 if self._lib is not None else fastest_half_dtype()
        return self._weight_dtype

    def native(self):
        """The NativeStep over the lean decoder, or None (PyTorch steps)."""
        # lazy: torch loads only when this runs
        from ohlora.decoding.native_step import NativeStep, NativeUnavailable

        lean = self.lean()
        if lean is None or self._lib is None:
            return None
        if self._native is None or self._native.lean is not lean:
            try:
                self._native = NativeStep(self._lib, lean, self.weight)
            except NativeUnavailable:
                self._lib, self._native = None, None
        return self._native

    @property
    def step_kernel(self) -> str:
        """What runs a generated token: "native", "torch" (LeanGemma3) or "hf" (the HF backbone)."""
        return "native" if self.native() is not None else "torch" if self.lean() is not None else "hf"

    def lean(self):
        """The LeanGemma3 decoder (chat adapter merged) if this is a Gemma 3 text model on CPU, else None."""
        # lazy: torch loads only when this runs
        from ohlora.decoding.lean_gemma3 import LeanGemma3

        if self._lean is None:
            ok = getattr(self.backbone.config, "model_type", "") == "gemma3_text" and self.weight.device.type == "cpu"
            self._lean = LeanGemma3(self.backbone, self.adapter, self.weight_dtype) if ok else False
        return self._lean or None

    def _steps(self, ids, max_new_tokens):
        """(logits (1, V') for the first new token, step(token) -> the next logits)."""
        # lazy: torch, transformers load only when this runs
        import torch
        from transformers import DynamicCache

        lean = self.lean()
        if lean is not None:
            cache, start = self.prefix.take(ids[0].tolist(), ids.shape[1] + max_new_tokens, lean.new_cache)
            first = lean.forward(ids[0, start:], cache)[None]
            native = self.native()
            half_steps = lean.weight_dtype == torch.float16 and native is None  # activations cast to fp16
            overflow = not bool(torch.isfinite(first).all()) or (half_steps and lean.half_overflow)
            if lean.weight_dtype != torch.float32 and overflow:
                # Some activation left fp16's range (max 65504) for this model/adapter: go back to
                # fp32 matrices for good and run the prompt again. (The native step keeps its
                # activations in fp32, so its fp16 weights stay.)
                self._weight_dtype, self._lean = torch.float32, None
                self.prefix.clear()
                return self._steps(ids, max_new_tokens)
            seen = self.prefix.hold(ids[0].tolist(), cache)

            def step(nxt):
                seen.append(nxt)  # the cache now holds this token too
                if native is not None:
                    logits = native.step(nxt, cache)  # (1, V'), the head applied in C
                    return (logits / self.softcap).tanh() * self.softcap if self.softcap else logits
                return self._logits(lean.forward(torch.tensor([nxt]), cache)[None])
            return self._logits(first), step
        cache = DynamicCache(config=self.backbone.config)
        run = lambda x: self.backbone(input_ids=x, use_cache=True, **{self.cache_kw: cache}).last_hidden_state[:, -1]  # noqa: E731
        return self._logits(run(ids)), lambda nxt: self._logits(run(torch.tensor([[nxt]], device=ids.device)))

    @contextmanager
    def _decode_threads(self, on_cpu: bool):
        """Threads for the generated tokens (the prompt ran with every thread)."""
        # lazy: torch loads only when this runs
        import torch

        threads = torch.get_num_threads()
        n = min(decode_threads(self.decode_threads), threads) if self.decode_threads and on_cpu else None
        native = self.native() if n else None
        if n:
            torch.set_num_threads(n)
            if native is not None:
                native.threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            if native is not None:
                native.threads(1)  # idle workers would spin

    @property
    def reused_tokens(self) -> int:
        """Prompt tokens the last call took from the previous call's cache instead of running."""
        return self.prefix.reused

    @contextmanager
    def session(self, prompt: str, max_new_tokens: int):
        """A custom decode loop over this generator (the memory writer's constrained decoding):
        yields a `DecodeSession` whose `logits()` are over the head's tokens (`vocab`, full ids)
        for the next position and whose `advance(token_id)` feeds one token."""
        # lazy: torch loads only when this runs
        import torch

        ids = self.tokenizer(prompt, return_tensors="pt")["input_ids"].to(self.weight.device)  # (1, T)
        with torch.inference_mode(), use_adapter(self.model, self.adapter):
            logits, step = self._steps(ids, max_new_tokens)
            with self._decode_threads(ids.device.type == "cpu"):
                yield DecodeSession(self, logits, step)

    def generate(self, prompt, *, stop_phrase, max_new_tokens, temperature, on_text=None, loop_guard=None):
        # lazy: torch loads only when this runs
        import torch

        ids = self.tokenizer(prompt, return_tensors="pt")["input_ids"].to(self.weight.device)  # (1, T)
        with torch.inference_mode(), use_adapter(self.model, self.adapter):
            logits, step = self._steps(ids, max_new_tokens)  # the prompt, with every thread
            with self._decode_threads(ids.device.type == "cpu"):
                return self._decode(logits, step, max_new_tokens, temperature, stop_phrase, on_text,
                                    loop_guard.tracker() if loop_guard else None)


class DecodeSession:
    """One sequence being decoded token by token (see FastGenerator.session)."""

    def __init__(self, gen: FastGenerator, logits, step):
        self._logits, self.step = logits, step  # (1, V') and token -> the next (1, V')
        self.vocab = gen.ids  # (V',) full-vocabulary ids of the head's rows, or None (full head)

    def logits(self):
        """(V',) next-token logits over the head's rows."""
        return self._logits[0].float()

    def advance(self, token_id: int) -> None:
        self._logits = self.step(token_id)
