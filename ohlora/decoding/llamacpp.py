"""LlamaCppGenerator: `--engine llamacpp`, chat decoding in llama.cpp (llama-cpp-python) with
ohlora's restricted output head.

The engine file (built by export/engine_file.py; the runtime hands its path here) is the chat
adapter merged into the base and converted by llama.cpp's own converter (F16 by default so greedy
answers stay ohlora's), then cut to the head's tokens and cached under `$OHLORA_HOME/engines/`. llama.cpp's token
k is full-vocabulary token `ids[k]`, so its logits (V',) are already the restricted head's and the
sampling loop is FastGenerator's own (`HeadDecodeLoop`). Every input token, prompt or generated,
goes in as an embedding row: the row of the full embedding times sqrt(H), which is what Gemma 3's
graph does to a token id (llama.cpp skips that scale for embedding input), so a token outside
the head still reads as itself.

The KV cache of the last call is kept and its longest common prefix with the next prompt reused
(the persona and the turns already shown), as FastGenerator does. Threads: the prompt uses every
core, the decode `decode_threads` ("auto": the free cores, see ohlora/decoding/threads.py).

A file with its full vocabulary (`ids=None`: the plain `ohlora export gguf` output) is decoded
from token ids, as any llama.cpp program would: that is `bench chat`'s llama.cpp anchor.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np

from ohlora.decoding.fast import HeadDecodeLoop
from ohlora.decoding.prefix_cache import shared_prefix
from ohlora.decoding.threads import decode_threads
from ohlora.errors import OhloraError

INSTALL_HINT = "pip install 'ohlora[llamacpp]' (builds llama.cpp from source, ~10 min)"


def import_llama_cpp():
    """llama_cpp, or a one-line error saying how to get it."""
    try:
        import llama_cpp  # lazy: an optional extra
    except ImportError:
        raise OhloraError(f"--engine llamacpp needs llama-cpp-python: {INSTALL_HINT}") from None
    return llama_cpp


class LlamaCppGenerator(HeadDecodeLoop):
    """Same interface as FastGenerator.generate, decoding in llama.cpp."""

    def __init__(self, gguf_path: Path, tokenizer, embed=None, ids: list[int] | None = None, *,
                 top_k: int = 50, decode_threads="auto", n_ctx: int = 4096, n_batch: int = 512):
        """`embed`: the full input embedding (V, H) of the same model (needed with `ids`); `ids`:
        the head's full-vocabulary ids the file was cut to (None: a full-vocabulary file)."""

        L = import_llama_cpp()
        self.L, self.np = L, np
        self.tokenizer, self.top_k, self.eos = tokenizer, top_k, tokenizer.eos_token_id
        self.decode_threads = decode_threads
        self.path = Path(gguf_path)
        self.ids = None
        self._row = None
        if ids is not None:
            # lazy: torch loads only when this runs
            import torch

            if embed is None:
                raise ValueError("a cut engine file needs the model's input embedding")
            self.ids = torch.tensor(ids, dtype=torch.long)
            self._row = {int(t): r for r, t in enumerate(ids)}
            self.embed = embed.detach()  # (V, H), shared with the model: no copy
            self.embed_scale = float(self.embed.shape[1]) ** 0.5  # Gemma scales token embeddings by sqrt(H)
        if getattr(L, "_ohlora_quiet", None) is None:
            # llama.cpp keeps the callback's address for the life of the process (it logs even while
            # freeing a model), so the callback lives as long as the llama_cpp module, not this object.
            L._ohlora_quiet = L.llama_log_callback(lambda level, text, data: None)
        L.llama_log_set(L._ohlora_quiet, ctypes.c_void_p(0))
        L.llama_backend_init()
        mp = L.llama_model_default_params()
        if hasattr(mp, "use_extra_bufts"):
            # The AMX repack buffers of some llama.cpp builds crash the first decode (llama.cpp #20824).
            mp.use_extra_bufts = False
        self.model = L.llama_model_load_from_file(str(self.path).encode(), mp)
        if not self.model:
            raise OhloraError(f"llama.cpp could not load {self.path}")
        self.n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(self.model))
        self.n_embd = L.llama_model_n_embd(self.model)
        if self.ids is not None and (self.n_vocab != len(ids) or self.n_embd != self.embed.shape[1]):
            raise OhloraError(f"{self.path.name} holds {self.n_vocab} tokens x {self.n_embd}, the head "
                              f"{len(ids)} x {self.embed.shape[1]}: not this model's engine file")
        self.prompt_threads = max(1, min(os.cpu_count() or 1, 8))
        cp = L.llama_context_default_params()
        cp.n_ctx, cp.n_batch, cp.n_ubatch = n_ctx, n_batch, n_batch
        cp.n_threads = cp.n_threads_batch = self.prompt_threads
        if hasattr(cp, "swa_full"):
            cp.swa_full = True  # sliding-window layers keep every position, so a cached prefix can be kept
        self.ctx = L.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise OhloraError(f"llama.cpp could not make a context for {self.path.name}")
        self.n_ctx, self.n_batch = n_ctx, n_batch
        self.batch = L.llama_batch_init(n_batch, self.n_embd if self.ids is not None else 0, 1)
        self._seen: list[int] = []  # full-vocabulary ids whose keys and values are in the cache
        self.reused_tokens = 0

    def close(self) -> None:
        L = self.L
        if getattr(self, "batch", None) is not None:
            L.llama_batch_free(self.batch)
            self.batch = None
        if getattr(self, "ctx", None):
            L.llama_free(self.ctx)
            self.ctx = None
        if getattr(self, "model", None):
            L.llama_model_free(self.model)
            self.model = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001  (interpreter shutdown)
            pass

    # -- llama.cpp calls -------------------------------------------------------------------------
    def _feed(self, tokens: list[int], p0: int, all_logits: bool = False):
        """Run full-vocabulary tokens at positions p0.. in chunks of n_batch; returns the logits
        (1, V') of the last one, or of every one (T, V') with `all_logits`."""
        # lazy: torch loads only when this runs
        import torch

        L, np = self.L, self.np
        out = []
        b = self.batch
        for c0 in range(0, len(tokens), self.n_batch):
            chunk = tokens[c0:c0 + self.n_batch]
            n = len(chunk)
            if self.ids is not None:
                rows = (self.embed[torch.tensor(chunk)].float() * self.embed_scale).contiguous()  # (n, H)
                ctypes.memmove(b.embd, rows.data_ptr(), rows.numel() * 4)
            for i, t in enumerate(chunk):
                if self.ids is None:
                    b.token[i] = t
                b.pos[i] = p0 + c0 + i
                b.n_seq_id[i] = 1
                b.seq_id[i][0] = 0
                b.logits[i] = all_logits or (c0 + i == len(tokens) - 1)
            b.n_tokens = n
            rc = L.llama_decode(self.ctx, b)
            if rc != 0:
                raise OhloraError(f"llama.cpp decode failed (code {rc}) at position {p0 + c0}")
            for i in range(n) if all_logits else ([n - 1] if c0 + n == len(tokens) else []):
                ptr = L.llama_get_logits_ith(self.ctx, i)
                out.append(np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy())
        return torch.from_numpy(np.stack(out))

    def _start(self, ids: list[int], max_new_tokens: int):
        """Keep the cached prefix shared with `ids`, run the rest; the first logits (1, V')."""
        L = self.L
        if len(ids) + max_new_tokens > self.n_ctx:
            raise OhloraError(f"prompt of {len(ids)} tokens + {max_new_tokens} new exceeds the llama.cpp "
                              f"context ({self.n_ctx})")
        n = shared_prefix(self._seen, ids)
        mem = L.llama_get_memory(self.ctx)
        if n == 0 or not L.llama_memory_seq_rm(mem, 0, n, -1):
            L.llama_memory_clear(mem, True)
            n = 0
        self.reused_tokens = n
        self._seen = list(ids[:n])
        L.llama_set_n_threads(self.ctx, self.prompt_threads, self.prompt_threads)
        logits = self._feed(ids[n:], n)
        self._seen = list(ids)
        return logits

    def _step(self, token: int):
        logits = self._feed([token], len(self._seen))
        self._seen.append(token)
        return logits

    # -- the generator interface -------------------------------------------------------------------
    def generate(self, prompt, *, stop_phrase, max_new_tokens, temperature, on_text=None, loop_guard=None):

        ids = self.tokenizer(prompt)["input_ids"]
        first = self._start(ids, max_new_tokens)  # the prompt, with every core
        n = decode_threads(self.decode_threads)
        self.L.llama_set_n_threads(self.ctx, n, self.prompt_threads)
        return self._decode(first, self._step, max_new_tokens, temperature, stop_phrase, on_text,
                            loop_guard.tracker() if loop_guard else None)

    def position_logits(self, ids: list[int]):
        """Logits (T, V') after every token of `ids`, from an empty cache (teacher forcing)."""
        L = self.L
        L.llama_memory_clear(L.llama_get_memory(self.ctx), True)
        self._seen = []
        L.llama_set_n_threads(self.ctx, self.prompt_threads, self.prompt_threads)
        out = self._feed(list(ids), 0, all_logits=True)
        L.llama_memory_clear(L.llama_get_memory(self.ctx), True)
        return out
