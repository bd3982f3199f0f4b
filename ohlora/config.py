"""Typed chat configuration: defaults < YAML file (--config, else $OHLORA_HOME/config.yaml) < flags."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from ohlora.decoding.choices import DECODE_KERNELS, ENGINE_QUANTS, ENGINES, WEIGHTS
from ohlora.errors import OhloraError
from ohlora.paths import home_dir
from ohlora.safety.guard import EscalationPolicy
from ohlora.settings import load_config


@dataclass(frozen=True)
class ChatConfig:
    base: str = "gemma-3-270m"
    """Base LLM: a preset name, a Hugging Face id or a local model directory."""
    adapter: str | None = "default"
    """LoRA adapter directory (with its prompt_format.yaml); "default": the adapter shipped for the
    base model, if there is one; "none" (or null): the bare base model with few-shot examples."""
    memory_encoder: str = "default"
    """"default": the shipped memory adapter on EmbeddingGemma-300M (prepared from PyPI on first
    use, 1.2 GB); "shared": the memory adapter shipped for the chat's own base model (no extra
    model); "base": untrained pooling of the base model; "none": no recall; or a directory from
    `ohlora train memory`."""
    memory_writer: str = "adapter"
    """What decides what is stored: "adapter" = the memory writer (its own LoRA adapter on the
    chat's base, reading the user's message only; the one shipped for the base, or
    `writer_adapter`); "chat" = the chat model's own leading tag, as before. Both are validated."""
    writer_adapter: str = "default"
    """The writer adapter for memory_writer "adapter": "default" (shipped for the base) or a directory."""
    writer_intent: str = "default"
    """The key-intent head that decides under which key the writer stores (`ohlora train intent`):
    "default" (the one shipped for EmbeddingGemma-300M, on the memory's own model; off when the
    memory encoder does not load it), "none" (the writer adapter decides alone, as before), or a
    directory."""
    generator: str = "fast"
    """"fast": ohlora's decode loop with the adapter's restricted output head (head_vocab.json);
    "hf": plain transformers generate() with the full head."""
    weights: str = "auto"
    """Fast generator on CPU: "fp16" or "bf16" store the decoder's matrices in half precision (half
    the bytes read per token), "fp32" keeps them; "auto" = fp16 with the native step (it reads
    half weights at full speed on any CPU), else the fastest of the three timed on this CPU."""
    decode_kernel: str = "auto"
    """What runs each generated token of the fast generator: "native" = one C call per token
    (ohlora/decoding/gemma3_step.c, built once per machine with the system C compiler); "torch" =
    the same math in PyTorch operations; "auto" = native where a C compiler builds it."""
    engine: str = "torch"
    """Where the fast generator decodes: "torch" = ohlora's own decoder (PyTorch); "llamacpp" =
    llama.cpp through llama-cpp-python (the `llamacpp` extra), on the chat model merged and cut
    to the same restricted head (built once into $OHLORA_HOME/engines/)."""
    llamacpp_weights: str = "f16"
    """The llama.cpp engine's weights: "f16" answers as ohlora does; "q8_0" is faster and agrees
    a little less (see `ohlora bench chat`)."""
    decode_threads: object = "auto"
    """Threads per generated token: "auto" = the cores free at the start of each answer (one
    under load: a busy second core makes two threads far slower), or a number."""
    temperature: float = 0.6
    """Sampling temperature; 0 means greedy decoding."""
    max_new_tokens: int = 80
    """Generation stops here if the stop phrase has not appeared."""
    max_tries: int = 5
    """Generate again, up to this many times in all, while the cleaned answer is empty."""
    memory_threshold: float | None = None
    """A stored item is recalled only if its decision score reaches this: the calibrated
    probability under the memory encoder's recall policy, the cosine under the plain cosine
    policy. None: the policy's own threshold (chosen on the validation split; 0.6 for cosine)."""
    max_message_chars: int = 1000
    """Longer user messages are rejected with a message."""
    history_tokens: int = 160
    """Earlier turns shown before the message, newest first, up to this many tokens (0 = none)."""
    history_align: int = 4
    """Old turns leave the prompt in blocks of this many, so its start (persona + history) stays
    the same for several turns and the fast generator reuses its cached keys and values."""
    summary_adapter: str = "default"
    """Turns that fall out of the history budget are folded into a running summary by this
    adapter: "default" (the one shipped for the base), a directory from `ohlora train summary`,
    or "none" (they are dropped)."""
    time_check: bool = True
    """Check answers about the day and about her (`grounding.FactCheck`): a wrong weekday/date for
    today or tomorrow, the weekend on a weekday, or an age, birthday, MBTI, school, ... against the
    persona card, and an asked fact left out. Such answers are retried warmer, then repaired or
    answered from the card and the clock; they are shown once checked, not streamed."""
    date_retries: int = 2
    """How many times an answer with a wrong or missing fact (a date, or the card's) is generated
    again (temperature +0.1 each time) before it is repaired or answered from the card."""
    memory_retries: int = 2
    """When the user asks her back about themself (`내 강아지 이름 뭐였지?`) and a memory was
    recalled, an answer that leaves its value out is generated again (temperature +0.1 each time)
    up to this many times; the first that names it is kept (`memory/answer_check.py`). Such
    answers are shown once checked, not streamed. 0: never."""
    fact_topics: bool = True
    """Also know a question about her card by its nearest labelled questions (`memory/topics.py`,
    on the memory's EmbeddingGemma), not only by the fact check's patterns: an indirect question
    (`생일 케이크 예약하려는데 며칠로 하면 돼?`) is then checked like a direct one. Needs
    `time_check` and the default memory encoder."""
    fact_topics_min_cos: float = 0.75
    """The nearest labelled question must be at least this close (cosine) for a topic to count."""
    examples: int = 0
    """Show this many of her own SFT pairs nearest to the message (by the memory's sentence model,
    EmbeddingGemma) as worked turns before the history (`memory/examples.py`); 0: none."""
    examples_min_cos: float = 0.5
    """A bank pair is shown only when its message is at least this close (cosine) to the user's."""
    guard: str = "default"
    """The ethics guard: "default" (the one shipped for EmbeddingGemma-300M, reading the memory's
    model with its adapter off), "none", or a directory from `ohlora train guard`."""
    guard_blocks: tuple = (0, 60, 600, 3600, 86400)
    """Seconds blocked at a user's 1st, 2nd, ... firing of one guard category (0 = a warning only);
    the last entry repeats."""

    def __post_init__(self) -> None:
        checks = [
            (isinstance(self.base, str) and self.base.strip() != "", "base must be a non-empty string"),
            (self.adapter is None or isinstance(self.adapter, str), "adapter must be a path or null"),
            (isinstance(self.memory_encoder, str) and self.memory_encoder.strip() != "",
             "memory_encoder must be 'default', 'base' or a directory"),
            (self.generator in ("fast", "hf"), "generator must be 'fast' or 'hf'"),
            (self.weights in WEIGHTS, f"weights must be one of {', '.join(WEIGHTS)}"),
            (self.engine in ENGINES, f"engine must be one of {', '.join(ENGINES)}"),
            (self.decode_kernel in DECODE_KERNELS, f"decode_kernel must be one of {', '.join(DECODE_KERNELS)}"),
            (self.llamacpp_weights in ENGINE_QUANTS, f"llamacpp_weights must be one of {', '.join(ENGINE_QUANTS)}"),
            (self.decode_threads == "auto" or (_is_int(self.decode_threads) and 1 <= self.decode_threads <= 256),
             "decode_threads must be 'auto' or a number of threads"),
            (isinstance(self.temperature, (int, float)) and 0 <= self.temperature <= 5, "temperature must be in [0, 5]"),
            (_is_int(self.max_new_tokens) and 1 <= self.max_new_tokens <= 4096, "max_new_tokens must be in [1, 4096]"),
            (_is_int(self.max_tries) and 1 <= self.max_tries <= 50, "max_tries must be in [1, 50]"),
            # its range depends on the recall policy (probability or cosine): the Retriever checks it
            (self.memory_threshold is None or (isinstance(self.memory_threshold, (int, float))
                                               and not isinstance(self.memory_threshold, bool)),
             "memory_threshold must be a number (or null: the recall policy's own)"),
            (self.memory_writer in ("adapter", "chat"), "memory_writer must be 'adapter' or 'chat'"),
            (isinstance(self.writer_adapter, str) and self.writer_adapter.strip() != "",
             "writer_adapter must be 'default' or a directory"),
            (isinstance(self.writer_intent, str) and self.writer_intent.strip() != "",
             "writer_intent must be 'default', 'none' or a directory"),
            (_is_int(self.max_message_chars) and 1 <= self.max_message_chars <= 100_000,
             "max_message_chars must be in [1, 100000]"),
            (_is_int(self.history_tokens) and 0 <= self.history_tokens <= 4096, "history_tokens must be in [0, 4096]"),
            (isinstance(self.summary_adapter, str) and self.summary_adapter.strip() != "",
             "summary_adapter must be 'default', 'none' or a directory"),
            (isinstance(self.time_check, bool), "time_check must be true or false"),
            (_is_int(self.history_align) and 1 <= self.history_align <= 64, "history_align must be in [1, 64]"),
            (_is_int(self.date_retries) and 0 <= self.date_retries <= 10, "date_retries must be in [0, 10]"),
            (_is_int(self.memory_retries) and 0 <= self.memory_retries <= 10, "memory_retries must be in [0, 10]"),
            (isinstance(self.fact_topics, bool), "fact_topics must be true or false"),
            (isinstance(self.fact_topics_min_cos, (int, float)) and -1 <= self.fact_topics_min_cos <= 1,
             "fact_topics_min_cos must be in [-1, 1]"),
            (_is_int(self.examples) and 0 <= self.examples <= 8, "examples must be in [0, 8]"),
            (isinstance(self.examples_min_cos, (int, float)) and -1 <= self.examples_min_cos <= 1,
             "examples_min_cos must be in [-1, 1]"),
            (isinstance(self.guard, str) and self.guard.strip() != "", "guard must be 'default', 'none' or a directory"),
            (isinstance(self.guard_blocks, (list, tuple)), "guard_blocks must be a list of seconds"),
        ]
        for ok, msg in checks:
            if not ok:
                raise OhloraError(f"config: {msg}")
        try:  # the escalation's own rule for its table of blocks
            EscalationPolicy(blocks=tuple(self.guard_blocks))
        except OhloraError as e:
            raise OhloraError(f"config: {e}") from None

    def as_dict(self) -> dict:
        return asdict(self)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def load_chat_config(path: Path | None = None, **overrides) -> ChatConfig:
    """Defaults, then the YAML file (a `chat:` section or top-level keys), then every override that is not None."""
    if path is None:
        default = home_dir() / "config.yaml"
        path = default if default.exists() else None
    return load_config(ChatConfig, path, "chat", **overrides)
