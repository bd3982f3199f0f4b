"""build_runtime wires the memory pipeline from config: the writer adapter beside the chat's, the
memory adapter on the chat's model or on a model of its own, the recall policy saved beside it."""

import shutil

import pytest
from test_memory_model import COMBS
from test_recall import COMBS as VALID_COMBS
from test_writer import write_rows

from ohlora.config import ChatConfig
from ohlora.errors import OhloraError
from ohlora.runtime import build_runtime
from ohlora.training.memory import load_memory_train_config, train_memory
from ohlora.training.writer import WriterTrainConfig, train_writer


@pytest.fixture(scope="module")
def adapters(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("runtime")
    combs = tmp / "c.txt"
    combs.write_text(COMBS, encoding="utf-8")
    valid = tmp / "v.txt"
    valid.write_text(VALID_COMBS, encoding="utf-8")
    mem = train_memory(load_memory_train_config(base=str(tiny_model_dir), train_combs=str(combs), test_combs=str(combs),
                                                valid_combs=str(valid), output=str(tmp / "mem"), steps=2, k=4,
                                                threads=1), log=lambda m: None)[0]
    other_base = tmp / "other-base"  # a memory encoder on a model that is not the chat's
    shutil.copytree(tiny_model_dir, other_base)
    mem_other = train_memory(load_memory_train_config(base=str(other_base), train_combs=str(combs),
                                                      test_combs=str(combs), valid_combs=str(valid),
                                                      output=str(tmp / "mem-other"), steps=2, k=4, threads=1),
                             log=lambda m: None)[0]
    rows = [("나 내일 면접 있어", "[내일 일정: 면접]", ""), ("안녕", "", "")]
    train = write_rows(tmp / "w.csv", [(m + f" {i}", t, a) for i in range(6) for m, t, a in rows])
    test = write_rows(tmp / "wt.csv", [("반가워", "", "")])
    writer = train_writer(WriterTrainConfig(base=str(tiny_model_dir), train_file=str(train), sft_file="none",
                                            test_file=str(test), output=str(tmp / "writer"), epochs=1, batch_size=4,
                                            lora_targets=("q_proj", "v_proj"), threads=1, valid_share=0.3),
                          log=lambda m: None)[0]
    return mem, mem_other, writer


def runtime(tiny_model_dir, **cfg):
    return build_runtime(ChatConfig(base=str(tiny_model_dir), adapter="none", temperature=0, max_new_tokens=8, **cfg),
                         log=lambda m: None)


def test_writer_and_memory_adapters_share_the_chat_model(tiny_model_dir, adapters):
    mem, _, writer = adapters
    rt = runtime(tiny_model_dir, memory_encoder=str(mem), writer_adapter=str(writer))
    e = rt.engine
    assert type(e.writer).__name__ == "ConstrainedWriter"
    assert e.retriever.calibrated and e.retriever.threshold == e.retriever.decider.policy.threshold
    assert set(e.generator.model.peft_config) == {"memory", "writer"}  # one model: both adapters on it
    rt.store.add("kim", "내일 일정", "면접")
    turn = e.turn("kim", "내일 뭐 입지")
    assert turn.write is not None and turn.write.ms >= 0
    assert e.retriever.scores("kim", "내일 뭐 입지")[0].cosine is not None


def test_a_memory_adapter_on_another_base_gets_its_own_model(tiny_model_dir, adapters):
    _, mem_other, _ = adapters
    rt = runtime(tiny_model_dir, memory_encoder=str(mem_other), memory_writer="chat")
    assert rt.engine.retriever.encoder.model is not rt.engine.generator.model
    assert type(rt.engine.writer).__name__ == "ChatTagWriter"


def test_memory_threshold_overrides_the_policy_and_none_turns_recall_off(tiny_model_dir, adapters):
    mem, _, writer = adapters
    assert runtime(tiny_model_dir, memory_encoder=str(mem), memory_threshold=0.99,
                   writer_adapter=str(writer)).engine.retriever.threshold == 0.99
    assert runtime(tiny_model_dir, memory_encoder="none", memory_writer="chat").engine.retriever is None
    with pytest.raises(OhloraError, match="writer adapter directory"):
        runtime(tiny_model_dir, memory_encoder="none", writer_adapter="/nonexistent/writer")
