"""LeanGemma3: a minimal Gemma 3 text decoder for one sequence at a time, for fast CPU chat.

The Hugging Face forward is general (batches, masks, hooks, cache classes, LoRA wrappers): per
generated token it runs several thousand small Python-level operations around ~100M multiply-adds.
This module copies the weights once, with the chat LoRA adapter merged in, fuses q/k/v and
gate/up into single matmuls, keeps a preallocated KV cache, and runs the same math in ~40 tensor
operations per layer. `tests/test_fast_generation.py` checks it against the HF forward.

Decoding one token is a chain of matrix-vector products, so its speed is set by how many bytes of
weights each token reads. With `weight_dtype` fp16 or bf16 the matrices are stored in half
precision (half the bytes); for one token inputs are cast to it and outputs back to fp32 (a prompt's
many rows convert fp16 weights to fp32 instead, see `_mm`), so norms, the residual stream, RoPE and
the KV cache stay fp32. The native step (ohlora/decoding/native_step.py) runs the one-token case in C. Which half type is fast depends on the CPU's instructions
and oneDNN's kernels, so `fastest_half_dtype()` times them on this machine.

Shapes: T = tokens in this call, S = tokens in the cache, H = hidden size, D = head dim,
nh / nkv = query / key-value heads.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F


def _merged_weight(linear, adapter: str | None) -> torch.Tensor:
    """The weight a (possibly LoRA-wrapped) Linear applies, with `adapter` merged in: (out, in)."""
    base = getattr(linear, "base_layer", linear)
    w = base.weight.detach().clone()
    if adapter is not None and hasattr(linear, "lora_A") and adapter in linear.lora_A:
        w += linear.get_delta_weight(adapter).detach().to(w.dtype)
    return w


WEIGHT_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
HALF_MAX = 65504.0  # the largest finite fp16


def fastest_half_dtype(rows: int = 4096, cols: int = 640, mats: int = 8, reps: int = 4,
                       threads: int | None = 1) -> torch.dtype:
    """Times matrix-vector products per dtype on this CPU (well under a second) and returns the
    fastest of fp32, bf16 and fp16: half-precision kernels are fast only where the CPU has the
    instructions for them (or oneDNN a good path), and that differs between machines. The
    matrices (84 MB in fp32 by default) exceed the caches, as the decoder's do, and the timing
    runs on `threads` threads, as decoding does."""

    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    best, best_t = torch.float32, float("inf")
    try:
        with torch.inference_mode():
            for dtype in WEIGHT_DTYPES.values():
                ws = [torch.full((rows, cols), 0.01, dtype=dtype) for _ in range(mats)]
                x = torch.full((1, cols), 0.5, dtype=dtype)
                F.linear(x, ws[0])  # warm-up (kernel selection)
                t = time.perf_counter()
                for _ in range(reps):
                    for w in ws:
                        F.linear(x, w)
                elapsed = time.perf_counter() - t
                if elapsed < best_t * 0.8:  # a half dtype must win clearly to be used
                    best, best_t = dtype, elapsed
    finally:
        torch.set_num_threads(old)
    return best


def decoder_weight_dtype(weights: str) -> torch.dtype:
    """The dtype named "fp32" / "bf16" / "fp16" ("auto" is resolved by fastest_half_dtype)."""
    if weights not in WEIGHT_DTYPES:
        raise ValueError(f"weights must be 'auto' or one of {', '.join(WEIGHT_DTYPES)}")
    return WEIGHT_DTYPES[weights]


class LeanGemma3:
    def __init__(self, decoder, adapter: str | None = None, weight_dtype: torch.dtype = torch.float32):
        cfg = decoder.config
        self.weight_dtype = weight_dtype
        self.half_overflow = False
        """Set once a prompt's activations left fp16's range (fp16 weights only; see _mm)."""
        self.cfg = cfg
        self.nh, self.nkv, self.D = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.eps = cfg.rms_norm_eps
        self.scaling = cfg.query_pre_attn_scalar ** -0.5
        self.window = cfg.sliding_window
        self.embed = decoder.embed_tokens.weight.detach()  # (V, H), shared with the model
        self.embed_scale = torch.tensor(cfg.hidden_size ** 0.5, dtype=self.embed.dtype)
        self.final_w = 1.0 + decoder.norm.weight.detach().float()
        self.layers = []
        for i, layer in enumerate(decoder.layers[: cfg.num_hidden_layers]):
            a, m = layer.self_attn, layer.mlp
            w = lambda t: t.to(weight_dtype).contiguous()  # noqa: E731
            self.layers.append({
                "qkv": w(torch.cat([_merged_weight(a.q_proj, adapter), _merged_weight(a.k_proj, adapter),
                                    _merged_weight(a.v_proj, adapter)])),  # (nh*D + 2*nkv*D, H)
                "o": w(_merged_weight(a.o_proj, adapter)),  # (H, nh*D)
                "gu": w(torch.cat([_merged_weight(m.gate_proj, adapter), _merged_weight(m.up_proj, adapter)])),
                "down": w(_merged_weight(m.down_proj, adapter)),  # (H, I)
                "in": 1.0 + layer.input_layernorm.weight.detach().float(),
                "post_attn": 1.0 + layer.post_attention_layernorm.weight.detach().float(),
                "pre_ff": 1.0 + layer.pre_feedforward_layernorm.weight.detach().float(),
                "post_ff": 1.0 + layer.post_feedforward_layernorm.weight.detach().float(),
                "q_norm": 1.0 + a.q_norm.weight.detach().float(),
                "k_norm": 1.0 + a.k_norm.weight.detach().float(),
                "type": cfg.layer_types[i],
            })
        self.inter = cfg.intermediate_size
        self.inv_freq = {}
        for kind in set(cfg.layer_types):
            params = cfg.rope_parameters[kind]
            if params.get("rope_type", "default") != "default":
                raise ValueError(f"LeanGemma3 supports default RoPE only, not {params['rope_type']}")
            self.inv_freq[kind] = 1.0 / (params["rope_theta"] ** (torch.arange(0, self.D, 2, dtype=torch.float) / self.D))

    def _mm(self, x, w):
        """x @ w.T, result fp32: (T, in) x (out, in) -> (T, out). One row (a generated token):
        in w's dtype. Many rows (a prompt) with fp16 weights: w converted to fp32 first, since
        PyTorch's fp16 matrix products are slow on CPUs without fp16 arithmetic (measured on an
        AMD EPYC, 89 rows through the decoder's matrices: 860 ms in fp16, 233 ms converting);
        `half_overflow` then records whether a product's input or output left fp16's range,
        as a one-row fp16 step would see it."""
        if w.dtype == torch.float16 and x.shape[0] > 1:
            out = F.linear(x, w.float())
            if not self.half_overflow and max(float(x.abs().max()), float(out.abs().max())) > HALF_MAX:
                self.half_overflow = True
            return out
        return F.linear(x.to(w.dtype), w).float()

    def _rms(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * w

    def new_cache(self, max_len: int) -> dict:
        L = len(self.layers)
        shape = (L, self.nkv, max_len, self.D)
        cos_sin = {}
        for kind, inv in self.inv_freq.items():
            freqs = torch.arange(max_len, dtype=torch.float)[:, None] * inv  # (S, D/2)
            emb = torch.cat([freqs, freqs], -1)  # (S, D)
            cos_sin[kind] = (emb.cos(), emb.sin())
        return {"k": torch.zeros(shape), "v": torch.zeros(shape), "len": 0, "rope": cos_sin}

    @staticmethod
    def _rope(x, cos, sin):  # x: (heads, T, D)
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
        return x * cos + rotated * sin

    def forward(self, ids: torch.Tensor, cache: dict, every_position: bool = False) -> torch.Tensor:
        """Run tokens `ids` (T,) after the cached ones; returns the final-normed hidden state of the
        last token (H,), or of every position (T, H) with `every_position`."""
        T, p0 = ids.shape[0], cache["len"]
        S = p0 + T
        x = self.embed[ids] * self.embed_scale  # (T, H)
        nq, nk = self.nh * self.D, self.nkv * self.D
        for li, L in enumerate(self.layers):
            h = self._rms(x, L["in"])
            qkv = self._mm(h, L["qkv"])  # (T, nq + 2 nk)
            q = qkv[:, :nq].view(T, self.nh, self.D).transpose(0, 1)  # (nh, T, D)
            k = qkv[:, nq:nq + nk].view(T, self.nkv, self.D).transpose(0, 1)  # (nkv, T, D)
            v = qkv[:, nq + nk:].view(T, self.nkv, self.D).transpose(0, 1)
            q, k = self._rms(q, L["q_norm"]), self._rms(k, L["k_norm"])
            cos, sin = (t[p0:S] for t in cache["rope"][L["type"]])  # (T, D)
            q, k = self._rope(q, cos, sin), self._rope(k, cos, sin)
            cache["k"][li, :, p0:S] = k
            cache["v"][li, :, p0:S] = v
            keys, values = cache["k"][li, :, :S], cache["v"][li, :, :S]  # (nkv, S, D)
            mask = None
            sliding = L["type"] == "sliding_attention" and self.window and S > self.window
            if T > 1 or sliding:
                i = torch.arange(p0, S)[:, None]  # query positions
                j = torch.arange(S)[None, :]  # key positions
                allowed = j <= i
                if sliding:
                    allowed &= j > i - self.window
                mask = allowed  # (T, S)
            attn = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=self.scaling,
                                                  enable_gqa=self.nh != self.nkv)  # (nh, T, D)
            attn = self._mm(attn.transpose(0, 1).reshape(T, nq), L["o"])  # (T, H)
            x = x + self._rms(attn, L["post_attn"])
            h = self._rms(x, L["pre_ff"])
            gu = self._mm(h, L["gu"])  # (T, 2 I)
            m = F.gelu(gu[:, :self.inter], approximate="tanh") * gu[:, self.inter:]
            x = x + self._rms(self._mm(m, L["down"]), L["post_ff"])
        cache["len"] = S
        return self._rms(x if every_position else x[-1], self.final_w)
