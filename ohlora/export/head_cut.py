"""A copy of a GGUF file whose vocabulary is cut to ohlora's restricted head (head_vocab.json).

For `--engine llamacpp` only, never for `ohlora export gguf`: the output head is half the bytes
a token reads in Gemma 3 270M (262k x 640), and Oh-LoRA only ever writes ~17k of those tokens.
Gemma ties the head to the input embedding, so the cut file's `token_embd.weight` keeps the rows
of the head's tokens (in head order) and the tokenizer arrays keep the same entries: llama.cpp's
token k is then full-vocabulary token `ids[k]`. A token outside the head can still be *read*:
the engine feeds input embeddings (rows of the full embedding, scaled as Gemma scales them)
instead of token ids, so the file's own vocabulary is only used for the output.

This is a copy with gguf-py's reader and writer (as llama.cpp's `gguf_new_metadata.py` copies),
not a converter: every other tensor and key is passed through as it is. The full ids are kept
in the file under `ohlora.head_ids` so the engine can check that file and head belong together.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ohlora.errors import OhloraError

HEAD_IDS_KEY = "ohlora.head_ids"
TOKEN_ARRAYS = ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type")
HEAD_TENSORS = ("token_embd.weight", "output.weight")  # rows = vocabulary (the second if untied)
# Keys that only make sense for the full vocabulary. None so far: the BPE merges name pieces by
# their text and llama.cpp's vocabulary loader needs them (it refuses a BPE file without), while a
# merge of pieces the head left out is never used (the engine feeds embeddings, never text).
DROPPED: tuple[str, ...] = ()


def cut_head(src: Path, dst: Path, ids: list[int]) -> Path:
    """Write `dst`: `src` with its vocabulary cut to `ids` (full-vocabulary ids, kept in this order)."""
    # lazy: gguf loads only when this runs
    import gguf

    reader = gguf.GGUFReader(str(src))
    tokens = reader.get_field("tokenizer.ggml.tokens")
    n_vocab = len(tokens.data) if tokens is not None else None
    if n_vocab is None:
        raise OhloraError(f"{src.name} has no tokenizer.ggml.tokens: not a llama.cpp model file")
    if not ids or min(ids) < 0 or max(ids) >= n_vocab or len(set(ids)) != len(ids):
        raise OhloraError(f"the head vocabulary does not fit {src.name} ({n_vocab} tokens)")
    rows = np.asarray(ids, dtype=np.int64)
    new_id = {old: new for new, old in enumerate(ids)}
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE).contents()
    partial = dst.with_name(dst.name + ".partial")
    writer = gguf.GGUFWriter(str(partial), arch, endianess=reader.endianess)
    try:
        for field in reader.fields.values():
            name = field.name
            if name == gguf.Keys.General.ARCHITECTURE or name.startswith("GGUF.") or name in DROPPED:
                continue
            vtype = field.types[0]
            sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
            value = field.contents()
            if name in TOKEN_ARRAYS:
                value = [value[i] for i in ids]
            elif name.startswith("tokenizer.ggml.") and name.endswith("_token_id"):
                if value not in new_id:
                    continue  # a special token the head leaves out (the engine never emits it)
                value = new_id[value]
            writer.add_key_value(name, value, vtype, sub_type=sub)
        writer.add_key_value(HEAD_IDS_KEY, [int(i) for i in ids], gguf.GGUFValueType.ARRAY,
                             sub_type=gguf.GGUFValueType.UINT32)
        datas = []
        for t in reader.tensors:
            data = t.data  # numpy, rows first: (n_vocab, bytes or values per row) for the head tensors
            if t.name in HEAD_TENSORS:
                if data.shape[0] != n_vocab:
                    raise OhloraError(f"{src.name}: {t.name} has {data.shape[0]} rows, the vocabulary {n_vocab}")
                data = np.ascontiguousarray(data[rows])
            datas.append(data)
            writer.add_tensor_info(t.name, data.shape, data.dtype, data.nbytes, t.tensor_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for data in datas:
            writer.write_tensor_data(data, tensor_endianess=reader.endianess)
        writer.close()
        os.replace(partial, dst)
    finally:
        partial.unlink(missing_ok=True)
    return dst


def head_ids_of(path: Path) -> list[int] | None:
    """The full-vocabulary ids a cut file was made for (None: a file with its full vocabulary)."""
    # lazy: gguf loads only when this runs
    import gguf

    field = gguf.GGUFReader(str(path)).get_field(HEAD_IDS_KEY)
    return None if field is None else [int(x) for x in field.contents()]
