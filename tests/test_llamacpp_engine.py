"""`--engine llamacpp`: the head cut of a GGUF file, the engine file's cache, the thread choice,
the runtime wiring and one-line errors; and (slow, with the llamacpp extra) the engine answering
as ohlora's own decoder does on the real default model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ohlora.config import ChatConfig
from ohlora.decoding.threads import decode_threads, free_cores, own_running
from ohlora.errors import OhloraError
from ohlora.export.engine_file import engine_file_name, engine_gguf
from ohlora.export.head_cut import HEAD_IDS_KEY, cut_head, head_ids_of


# -- the head cut ------------------------------------------------------------------------------
def write_tiny_gguf(path: Path, n_vocab: int = 10, n_embd: int = 4, quant: bool = False) -> np.ndarray:
    import gguf

    w = gguf.GGUFWriter(str(path), "gemma3")
    w.add_block_count(1)
    w.add_tokenizer_model("llama")
    w.add_token_list([f"t{i}" for i in range(n_vocab)])
    w.add_token_scores([float(-i) for i in range(n_vocab)])
    w.add_token_types([1] * n_vocab)
    w.add_bos_token_id(2)
    w.add_eos_token_id(1)
    w.add_pad_token_id(9)  # left out of the head below
    w.add_token_merges(["t0 t1", "t1 t8"])
    emb = (np.arange(n_vocab * n_embd, dtype=np.float32).reshape(n_vocab, n_embd) / 7).astype(np.float16)
    w.add_tensor("token_embd.weight", emb)
    other = np.ones((3, n_embd), dtype=np.float32)
    w.add_tensor("blk.0.attn_norm.weight", other)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return emb


def test_the_cut_keeps_the_heads_rows_and_tokens_in_head_order(tmp_path):
    import gguf

    emb = write_tiny_gguf(tmp_path / "full.gguf")
    ids = [0, 1, 2, 5, 7]
    cut_head(tmp_path / "full.gguf", tmp_path / "cut.gguf", ids)
    r = gguf.GGUFReader(str(tmp_path / "cut.gguf"))
    assert r.get_field("tokenizer.ggml.tokens").contents() == [f"t{i}" for i in ids]
    assert r.get_field("tokenizer.ggml.scores").contents() == pytest.approx([-float(i) for i in ids])
    assert r.get_field("tokenizer.ggml.bos_token_id").contents() == 2  # full id 2 is head row 2
    assert r.get_field("tokenizer.ggml.eos_token_id").contents() == 1
    assert r.get_field("tokenizer.ggml.padding_token_id") is None  # not in the head: dropped, not wrong
    assert r.get_field("tokenizer.ggml.merges").contents() == ["t0 t1", "t1 t8"]  # llama.cpp needs them to load
    tensors = {t.name: t for t in r.tensors}
    np.testing.assert_array_equal(np.asarray(tensors["token_embd.weight"].data), emb[ids])
    np.testing.assert_array_equal(np.asarray(tensors["blk.0.attn_norm.weight"].data), np.ones((3, 4)))
    assert head_ids_of(tmp_path / "cut.gguf") == ids
    assert head_ids_of(tmp_path / "full.gguf") is None
    assert r.get_field(HEAD_IDS_KEY) is not None


@pytest.mark.parametrize("ids", [[], [0, 10], [3, 3], [-1, 2]])
def test_a_head_that_does_not_fit_is_one_line_and_writes_nothing(tmp_path, ids):
    write_tiny_gguf(tmp_path / "full.gguf")
    with pytest.raises(OhloraError, match="does not fit") as e:
        cut_head(tmp_path / "full.gguf", tmp_path / "cut.gguf", ids)
    assert "\n" not in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full.gguf"]


# -- the engine file's cache -------------------------------------------------------------------------
def test_the_engine_file_is_built_once_and_rebuilt_for_a_new_adapter(tmp_path, ohlora_home):
    adapter = tmp_path / "chat"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"v1")
    calls = []

    class Done:
        def __init__(self, gguf):
            self.gguf = gguf

    def export(adapter_dir, quant, out, base, log):
        calls.append((adapter_dir, quant, base))
        write_tiny_gguf(out)
        return Done(out)

    ids = [0, 1, 2, 3]
    first = engine_gguf(adapter, "gemma-3-270m", ids, "f16", log=lambda m: None, export=export)
    assert first.parent == ohlora_home / "engines" and first.name.startswith("chat-f16-")
    assert head_ids_of(first) == ids
    assert engine_gguf(adapter, "gemma-3-270m", ids, "f16", log=lambda m: None, export=export) == first
    assert len(calls) == 1  # cached
    (adapter / "adapter_model.safetensors").write_bytes(b"v2")  # retrained
    assert engine_gguf(adapter, "gemma-3-270m", ids, "f16", log=lambda m: None, export=export) != first
    assert len(calls) == 2
    assert [p.name for p in (ohlora_home / "engines").iterdir() if not p.suffix == ".gguf"] == []  # no temp left
    assert engine_file_name(adapter, "gemma-3-270m", ids, "q8_0") != engine_file_name(adapter, "gemma-3-270m", ids, "f16")
    assert engine_file_name(adapter, "gemma-3-270m", ids[:3], "f16") != engine_file_name(adapter, "gemma-3-270m", ids, "f16")
    with pytest.raises(OhloraError, match="choose one of f16, q8_0"):
        engine_gguf(adapter, "gemma-3-270m", ids, "q4_k_m", export=export)


# -- threads chosen at run time ----------------------------------------------------------------------
def fake_proc(tmp_path: Path, procs_running: int, own_states: list[str]) -> tuple[str, str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    stat = tmp_path / "stat"
    stat.write_text(f"cpu  1 2 3\nctxt 5\nprocs_running {procs_running}\nprocs_blocked 0\n")
    tasks = tmp_path / "task"
    for i, st in enumerate(own_states):
        (tasks / str(100 + i)).mkdir(parents=True)
        (tasks / str(100 + i) / "stat").write_text(f"{100 + i} (pt main) {st} 1 2 3\n")
    return str(stat), str(tasks)


def test_auto_threads_count_the_cores_other_processes_leave_free(tmp_path, monkeypatch):
    monkeypatch.setattr("ohlora.decoding.threads.cores", lambda: 2)
    idle = fake_proc(tmp_path / "idle", 1, ["R", "S", "S"])  # only the asking thread runs
    assert free_cores(*idle) == 2 and decode_threads("auto", *idle) == 2
    spinning = fake_proc(tmp_path / "spin", 2, ["R", "R"])  # our own OpenMP worker spinning is not load
    assert own_running(spinning[1]) == 2 and decode_threads("auto", *spinning) == 2
    loaded = fake_proc(tmp_path / "loaded", 2, ["R", "S"])  # another process on the second core
    assert decode_threads("auto", *loaded) == 1
    busy = fake_proc(tmp_path / "busy", 9, ["R"])
    assert decode_threads("auto", *busy) == 1
    assert decode_threads("auto", str(tmp_path / "no-such-file"), idle[1]) == 1  # no /proc: one thread
    assert decode_threads(3, *idle) == 2  # never more than the cores
    assert decode_threads(1, *idle) == 1


def test_decode_threads_setting_is_checked(tmp_path):
    with pytest.raises(OhloraError, match="decode_threads"):
        ChatConfig(decode_threads="many")
    with pytest.raises(OhloraError, match="decode_threads"):
        ChatConfig(decode_threads=0)
    with pytest.raises(OhloraError, match="engine must be one of torch, llamacpp"):
        ChatConfig(engine="vllm")
    assert ChatConfig(decode_threads=2).decode_threads == 2


def test_decode_threads_flag_is_one_line_error():
    from click.testing import CliRunner

    from ohlora.cli import main

    r = CliRunner().invoke(main, ["ask", "--decode-threads", "zero", "안녕"])
    assert r.exit_code == 2 and "give 'auto' or a positive number of threads" in r.output
    assert "Traceback" not in r.output


def test_llamacpp_engine_without_the_extra_is_one_line_before_any_model_loads(monkeypatch, ohlora_home):
    import builtins

    from ohlora import runtime

    real_import = builtins.__import__

    def no_llama(name, *a, **k):
        if name == "llama_cpp":
            raise ImportError("No module named 'llama_cpp'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_llama)
    monkeypatch.setattr(runtime, "load_base", lambda spec: pytest.fail("loaded a model first"))
    with pytest.raises(OhloraError, match=r"pip install 'ohlora\[llamacpp\]'") as e:
        runtime.build_runtime(ChatConfig(engine="llamacpp", memory_encoder="none"), log=lambda m: None)
    assert "\n" not in str(e.value)


# -- the real engine (slow; needs llama-cpp-python) ------------------------------------------------------
@pytest.mark.slow
def test_llamacpp_engine_answers_as_ohloras_decoder(home):
    pytest.importorskip("llama_cpp")
    from ohlora.datasets.sft import load_dataset, spread_rows
    from ohlora.paths import bundled
    from ohlora.runtime import build_runtime

    cfg = dict(memory_encoder="none", memory_writer="chat", guard="none", summary_adapter="none",
               decode_threads=1)
    ours = build_runtime(ChatConfig(weights="fp32", **cfg), log=lambda m: None)
    llama = build_runtime(ChatConfig(engine="llamacpp", **cfg), log=lambda m: None)
    fmt, card = ours.engine.prompt_format, ours.card
    rows = spread_rows(load_dataset(Path(bundled("data", "sft", "valid.csv"))), 5)
    same = 0
    for r in rows:
        p = r.prompt(fmt, card)
        a = ours.engine.generator.generate(p, stop_phrase=fmt.stop_phrase, max_new_tokens=40, temperature=0)
        b = llama.engine.generator.generate(p, stop_phrase=fmt.stop_phrase, max_new_tokens=40, temperature=0)
        same += a.text == b.text
    assert same >= 4, f"{same}/5 identical greedy answers"
    # the cached prefix is reused: a second prompt sharing the persona runs only its own tokens
    gen = llama.engine.generator
    assert gen.reused_tokens > 0
    ours.store.close()
    llama.store.close()
