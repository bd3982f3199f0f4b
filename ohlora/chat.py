"""ChatEngine: one chat turn = guard -> retrieve -> render -> generate -> check -> parse -> store.

It gets every collaborator from outside (generator, retriever, store, prompt format, guard,
conversation store, clock) and never loads a model or opens a file itself, so tests drive it
with fakes. A turn may carry the conversation so far: the recent turns that fit the history
budget are shown before the message, the persona's facts (age for today) at the top, and the
running summary of the older turns between them. After an answer, the turns that the next prompt
will no longer show are folded into that summary (by the injected summarizer, if any).

What a turn stores (the turn in its conversation, the memories the writer chose, the new summary)
is held in its TurnWrites and committed in one SQLite transaction (`ChatEngine.commit`): all of it
or nothing. `turn()` commits at once by default; the server commits only once the client has had
the whole answer and is still there (README "Serving").
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import OrderedDict
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import Callable

from ohlora.config import ChatConfig
from ohlora.decoding.generator import GenerationResult, Generator, OnText
from ohlora.errors import OhloraError
from ohlora.expression import NEUTRAL
from ohlora.grounding import YES_NO, Asked, FactCheck
from ohlora.memory.answer_check import asks_back, carries
from ohlora.memory.retrieval import Recall, Retriever
from ohlora.memory.summarizer import SummaryResult
from ohlora.memory.writer import ChatTagWriter, MemoryWriter, WriteResult
from ohlora.parsing import MemoryTag, StreamFilter, check_message, is_looped, normalize_space, parse_answer
from ohlora.prompt import PromptFormat
from ohlora.store.conversations import ConversationStore, Turn
from ohlora.store.memories import AddResult, MemoryStore, validate_user

FALLBACK_ANSWER = "음... 뭐라고 답해야 할지 모르겠어 😅 다시 한 번 말해 줄래?"
SUMMARY_CACHE = 256
"""Running summaries kept for client-held histories (the OpenAI endpoint), most recent first."""
MAX_FOLD = 8
"""At most this many turns are folded at once (the newest of those that fall out)."""


@dataclass
class TurnWrites:
    """What one turn stores, held until `ChatEngine.commit` writes it in one transaction."""

    user: str
    conversation: int | None
    turn: Turn | None = None
    """The turn, appended to `conversation` (if any)."""
    tags: list[MemoryTag] = field(default_factory=list)
    """The memories to store (the writer's choice)."""
    summary: tuple[str, int] | None = None
    """The new running summary and how many leading turns it covers."""
    summary_key: str | None = None
    """A client-held history's summary is cached (in memory) under this digest instead."""
    done: bool = False


@dataclass
class TurnResult:
    answer: str
    finish_reason: str
    """"stop", "eos" or "length" for the last try; "fallback" when every try came back empty or
    looped; "loop" when a streamed answer looped after part of it was shown (it ends there)."""
    recalled: Recall | None
    stored: list[AddResult] = field(default_factory=list)
    tries: int = 1
    prompt: str = ""
    raw: str = ""
    n_tokens: int = 0
    write: WriteResult | None = None
    """What the memory writer made of the message (None when nothing was to be stored this turn)."""
    loops: int = 0
    """Tries thrown away because the answer looped (`parsing.is_looped`)."""
    guard: object | None = None
    """The ethics guard's GuardDecision when it answered instead of the model (finish "guard")."""
    date_retries: int = 0
    """Answers thrown away because they said a fact wrong or left an asked one out: a weekday or
    date (`timecheck`), or one of the persona card's (`grounding`)."""
    grounding: str = ""
    """"repaired" when every try said a fact wrong and the wrong words were replaced by the right
    ones; "grounded" when the answer is the sentence built from the card and the clock; "" else."""
    memory_retries: int = 0
    """Answers generated again because they left out the recalled value asked about."""
    history_turns: int = 0
    """Earlier turns shown in the prompt."""
    conversation: int | None = None
    expression: object | None = None
    """The face the answer carries (`expression.Expression`): made after the answer streamed."""
    summary: str = ""
    """The running summary shown in this turn's prompt."""
    folded: object | None = None
    """The summarizer's SummaryResult when turns were folded after this answer."""
    writes: TurnWrites | None = None
    """What this turn stores; `stored` is filled when they are committed."""

    @property
    def committed(self) -> bool:
        return self.writes is None or self.writes.done

    def as_dict(self) -> dict:
        return {
            "answer": self.answer,
            "finish_reason": self.finish_reason,
            "recalled": self.recalled.as_dict() if self.recalled else None,
            "stored": [r.as_dict() for r in self.stored],
            "tries": self.tries,
            "loops": self.loops,
            "n_tokens": self.n_tokens,
            "writer": ({"written": self.write.raw, "reason": self.write.reason, "ms": round(self.write.ms, 1)}
                       if self.write else None),
            "guard": self.guard.as_dict() if self.guard is not None else None,
            "date_retries": self.date_retries,
            "grounding": self.grounding,
            "memory_retries": self.memory_retries,
            "history_turns": self.history_turns,
            "conversation": self.conversation,
            "expression": self.expression.as_dict() if self.expression is not None else NEUTRAL.as_dict(),
            "summary": self.summary,
            "folded": self.folded.as_dict() if self.folded is not None else None,
        }


class ChatEngine:
    def __init__(
        self,
        generator: Generator,
        retriever: Retriever | None,
        store: MemoryStore,
        prompt_format: PromptFormat,
        config: ChatConfig | None = None,
        hint_fn: Callable[[str], str | None] | None = None,
        writer: MemoryWriter | None = None,
        guard=None,
        conversations: ConversationStore | None = None,
        facts_fn: Callable[[dt.date], str] | None = None,
        clock: Callable[[], dt.date] = dt.date.today,
        expressor=None,
        summarizer=None,
        fact_check: FactCheck | None = None,
        examples=None,
    ):
        self.generator = generator
        self.retriever = retriever
        self.store = store
        self.prompt_format = prompt_format
        self.config = config or ChatConfig()
        self.hint_fn = hint_fn
        self.writer = writer or ChatTagWriter()
        """Decides what is stored from the message; the default stores the chat's own tag (validated)."""
        self.guard = guard
        """An EthicsGuard (or None): screens each message before anything else happens."""
        self.conversations = conversations
        self.facts_fn = facts_fn
        """today -> the persona's facts line, for a format with a persona section."""
        self.clock = clock
        self.expressor = expressor
        """answer -> Expression (None: every answer gets the neutral face)."""
        self.fact_check = fact_check or FactCheck()
        """Checks answers about dates and her card's facts (`grounding`); without a card, dates only."""
        self.examples = examples
        """An ExampleBank (`memory/examples.py`), or None: her own pairs nearest to the message are
        shown before the history when `config.examples` > 0."""
        self.summarizer = summarizer
        """Folds the turns that leave the prompt into the running summary (None: they are dropped)."""
        self._summaries: OrderedDict[str, str] = OrderedDict()
        """Running summaries of client-held histories, by the digest of the turns they cover."""

    def turn(self, user: str, message: str, on_text: OnText | None = None, store: bool = True,
             temperature: float | None = None, max_new_tokens: int | None = None,
             history: list[Turn] | None = None, conversation: int | None = None,
             commit: bool = True) -> TurnResult:
        """Answer one message of `user`. `on_text` receives the visible answer as it streams;
        temperature and max_new_tokens override the config for this turn. `history`: the earlier
        turns (oldest first), or `conversation`: a stored conversation of this user, whose turns
        are the history and which this turn is appended to. `store=False`: the memory writer
        does not run. `commit=False`: nothing is stored yet; the caller commits the result
        (`commit`) or drops it (a client that hung up)."""
        user = validate_user(user)
        message = check_message(message, self.config.max_message_chars)
        history, summary, covered = list(history or []), "", 0
        if conversation is not None:
            if self.conversations is None:
                raise OhloraError("this chat keeps no conversations")
            conv = self.conversations.get(user, conversation)
            if conv is None:
                raise OhloraError(f"no conversation {conversation} for user {user}")
            history = self.conversations.turns(user, conv.id)
            summary, covered = conv.summary, min(conv.summary_turns, len(history))
        if self.guard is not None:
            decision = self.guard.screen(user, message)
            if decision.stops_turn:
                if on_text:
                    on_text(decision.reply)
                writes = TurnWrites(user, conversation, Turn(message, decision.reply))
                return self._done(TurnResult(decision.reply, "guard", None, guard=decision, conversation=conversation,
                                             writes=writes), commit)
        recalled = self.retriever.best(user, message) if self.retriever else None
        hint = self.hint_fn(message) if self.hint_fn else None
        today = self.clock()
        shown = self.fit_history(history)
        if conversation is None and self.summarizer is not None:
            summary, covered = self._cached_summary(history[:len(history) - len(shown)])
        if covered > len(history) - len(shown):  # never show a turn the summary already covers
            shown = history[covered:]
        facts = self.facts_fn(today) if self.facts_fn and self.prompt_format.persona_template else None
        worked = self.examples.nearest(message, self.config.examples, self.config.examples_min_cos) \
            if self.examples is not None and self.config.examples else []
        prompt = self.prompt_format.render(message, recalled.item.text if recalled else None, hint,
                                           [*worked, *shown], facts, summary)
        verdicts: list[str] = []
        # An answer to a date question, to a question about her card's facts, or to one about a
        # recalled memory, is checked before it is shown, so it is not streamed
        check = self.fact_check
        asked = check.asked(message) if self.config.time_check else Asked()
        check_facts = self.config.time_check and (hint is not None or bool(asked))
        check_memory = recalled is not None and self.config.memory_retries > 0 and asks_back(message)
        held = check_facts or check_memory

        def wrong(answer) -> bool:
            return check_facts and answer is not None and bool(check.problems(asked, answer.message, today))

        parsed, result, tries = self.answer(prompt, None if held else on_text, temperature, max_new_tokens,
                                            on_try=verdicts.append)
        t0 = self.config.temperature if temperature is None else temperature
        date_retries, grounding, seen = 0, "", [parsed]
        while wrong(parsed) and date_retries < self.config.date_retries:
            date_retries += 1  # the successor's rule: try again a little warmer
            parsed, result, more = self.answer(prompt, None, t0 + 0.1 * date_retries, max_new_tokens,
                                               on_try=verdicts.append)
            tries += more
            seen.append(parsed)
        if wrong(parsed):  # every try said a fact wrong: mend one, else say it from the card
            parsed, grounding = self._ground(asked, [a for a in seen if a is not None], today)
        memory_retries = 0
        if check_memory and parsed is not None and not carries(parsed.message, recalled.item.value):
            while memory_retries < self.config.memory_retries:
                memory_retries += 1
                again, res, more = self.answer(prompt, None, t0 + 0.1 * memory_retries, max_new_tokens,
                                               on_try=verdicts.append)
                tries += more
                if again is not None and carries(again.message, recalled.item.value) and not wrong(again):
                    parsed, result = again, res  # the first answer that uses the memory; none: the first stands
                    break
        if held and on_text:
            on_text(parsed.message if parsed is not None else FALLBACK_ANSWER)
        loops = verdicts.count("loop")
        base = dict(tries=tries, prompt=prompt, raw=result.text, n_tokens=result.n_tokens, loops=loops,
                    date_retries=date_retries, memory_retries=memory_retries, grounding=grounding, history_turns=len(shown),
                    conversation=conversation, summary=summary)
        if parsed is None:
            writes = TurnWrites(user, conversation, Turn(message, FALLBACK_ANSWER))
            return self._done(TurnResult(FALLBACK_ANSWER, "fallback", recalled, writes=writes, **base), commit)
        writes, write = TurnWrites(user, conversation, Turn(message, parsed.message)), None
        if store:
            # after the answer has streamed: the writer adds nothing before the first token
            write = self.writer.write(message, parsed.raw_tag or None)  # as written: the writer validates
            if write.tag is not None:
                writes.tags.append(write.tag)
        expression = self.express(parsed.message)
        folded = self.fold(user, conversation, history + [Turn(message, parsed.message)], summary, covered, writes)
        return self._done(TurnResult(parsed.message, result.finish_reason, recalled, write=write,
                                     expression=expression, folded=folded, writes=writes, **base), commit)

    def _ground(self, asked: Asked, answers: list, today: dt.date):
        """(answer, how) for a turn whose every try said a fact wrong: the first try whose wrong
        words, replaced by the right ones, leave nothing wrong or missing ("repaired"); else the
        sentence from the card and the clock ("grounded"); else the last try repaired as far as
        it goes."""
        check, offset = self.fact_check, asked.date.offset if asked.date else None
        yes_no = asked.date is not None and bool(asked.date.claimed)  # `오늘 1일 맞나?`: a mended `맞아!` lies
        for a in answers:
            fixed = check.repair(a.message, today, offset)
            if fixed != a.message and yes_no and YES_NO.search(fixed):
                continue
            if not check.problems(asked, fixed, today):
                return replace(a, message=fixed), "repaired"
        sentence = check.grounded(asked, today)
        if sentence:
            return replace(answers[-1], message=sentence), "grounded"
        return replace(answers[-1], message=check.repair(answers[-1].message, today, offset)), "repaired"

    def _done(self, result: TurnResult, commit: bool) -> TurnResult:
        return self.commit(result) if commit else result

    def commit(self, result: TurnResult) -> TurnResult:
        """Store what `result` holds back (its TurnWrites) in one transaction: the turn in its
        conversation, its memories and the new summary, all or nothing (a conversation deleted
        meanwhile stores no memory either). Once only; fills `result.stored`."""
        w = result.writes
        if w is None or w.done:
            return result
        keep = self.conversations is not None and w.conversation is not None
        with ExitStack() as tx:  # one transaction: both tables live in the one database
            tx.enter_context(self.store.transaction())
            if keep:
                tx.enter_context(self.conversations.store.transaction())
            stored = [self.store.add_tag(w.user, tag) for tag in w.tags]
            if keep and w.turn is not None:
                self.conversations.append(w.user, w.conversation, w.turn.user, w.turn.answer)
            if keep and w.summary is not None and w.summary_key is None:
                self.conversations.set_summary(w.user, w.conversation, *w.summary)
        if w.summary is not None and w.summary_key is not None:
            self._summaries[w.summary_key] = w.summary[0]
            self._summaries.move_to_end(w.summary_key)
            while len(self._summaries) > SUMMARY_CACHE:
                self._summaries.popitem(last=False)
        w.done = True
        result.stored = stored
        return result

    def fold(self, user: str, conversation: int | None, turns: list[Turn], summary: str, covered: int,
             writes: TurnWrites | None = None):
        """After an answer: fold the turns the next prompt will no longer show into the running
        summary, kept with the stored conversation (or, for a client-held history, in a cache
        under the digest of the turns it covers): with `writes` when given (committed with the
        turn), else at once. Returns the SummaryResult, or None when nothing fell out. With no
        summarizer, nothing is folded and old turns are dropped."""
        if self.summarizer is None:
            return None
        upto = len(turns) - len(self.fit_history(turns))  # the first turn the next prompt shows
        if upto <= covered:
            return None
        said_by_guard = getattr(self.guard, "said", None)
        chunk = [t for t in turns[max(covered, upto - MAX_FOLD):upto]
                 if said_by_guard is None or not said_by_guard(t.answer)]  # the guard's turns are not folded
        result = self.summarizer.fold(summary, chunk) if chunk else SummaryResult(summary, "guard turns only", "", 0.0, 0)
        pending = writes if writes is not None else TurnWrites(user, conversation)
        pending.summary = (result.summary, upto)
        kept = conversation is not None and self.conversations is not None
        pending.summary_key = None if kept else _digest(turns[:upto])
        if writes is None:
            self.commit(TurnResult("", "", None, writes=pending))
        return result

    def fold_history(self, user: str, turns: list[Turn]) -> tuple[str, int]:
        """Fold a client-held history turn by turn, as the chat would have after each answer, and
        cache the result; returns (summary, turns it covers). For `eval conversation --suite long`."""
        summary, covered = "", 0
        for k in range(1, len(turns) + 1):
            if self.fold(user, None, turns[:k], summary, covered) is not None:
                summary, covered = self._cached_summary(turns[:k - len(self.fit_history(turns[:k]))])
        return summary, covered

    def _cached_summary(self, dropped: list[Turn]) -> tuple[str, int]:
        """(summary, turns it covers) for a client-held history whose first turns are `dropped`."""
        if not dropped:
            return "", 0
        key = _digest(dropped)
        if key in self._summaries:
            self._summaries.move_to_end(key)
            return self._summaries[key], len(dropped)
        return "", 0

    def express(self, answer: str):
        """The answer's expression; the neutral face when there is no classifier or it fails."""
        if self.expressor is None:
            return NEUTRAL
        try:
            return self.expressor.express(answer)
        except Exception:  # a face is never worth losing the answer over
            return NEUTRAL

    def fit_history(self, history: list[Turn]) -> list[Turn]:
        """The most recent turns whose rendered lines fit `history_tokens` (oldest first)."""
        return self.prompt_format.fit_history(history, self.count_tokens, self.config.history_tokens,
                                              self.config.history_align)

    def count_tokens(self, text: str) -> int:
        tok = getattr(self.generator, "tokenizer", None)
        if tok is None:
            return max(1, len(text) // 2)  # about two Hangul characters per token
        return len(tok(text, add_special_tokens=False)["input_ids"])

    def blocked(self, user: str):
        """The ethics guard's block in force for `user` (a GuardDecision), or None."""
        return self.guard.blocked(validate_user(user)) if self.guard is not None else None

    def answer(self, prompt: str, on_text: OnText | None = None, temperature: float | None = None,
               max_new_tokens: int | None = None, on_try: Callable[[str], None] | None = None):
        """Generate for a rendered prompt, retrying while the cleaned answer is empty or looped.

        A try ends as soon as its answer loops (`parsing.is_looped`), and counts as empty. The
        prompt format's LoopGuard is only a cap on top: for loops of short words (`신나는 신나는 ...`)
        the detector fires first (measured: the guard changed none of 147 sampled answers to the
        memory prompts), and masking earlier would turn a loop into an undetected stutter instead
        of a fresh try. While streaming, repeats are held back
        (StreamFilter's hold_repeats), but what came before the loop may already be on the user's
        screen: then the answer ends there (finish reason "loop") instead of starting again.
        `on_try` hears "ok", "empty" or "loop" for every try.

        Returns (parsed answer or None if every try was empty, last GenerationResult, tries).
        The fallback text is streamed when every try was empty.
        """
        cfg, stop = self.config, self.prompt_format.stop_phrase
        guard = self.prompt_format.loop_guard()
        for tries in range(1, cfg.max_tries + 1):
            watch = _Try(stop, on_text)
            try:
                result = self.generator.generate(
                    prompt, stop_phrase=stop,
                    max_new_tokens=cfg.max_new_tokens if max_new_tokens is None else max_new_tokens,
                    temperature=cfg.temperature if temperature is None else temperature, on_text=watch.feed,
                    loop_guard=guard,
                )
                parsed = parse_answer(result.text, stop)
                looped = is_looped(parsed.message)  # also for a generator that does not stream
            except _Looped:
                result = GenerationResult(watch.raw, "loop", watch.chunks)
                parsed, looped = parse_answer(watch.raw, stop), True
            if looped:
                if on_try:
                    on_try("loop")
                if watch.shown.strip():
                    return replace(parsed, message=watch.shown.strip()), replace(result, finish_reason="loop"), tries
                continue
            watch.finish()
            if on_try:
                on_try("ok" if parsed.message else "empty")
            if parsed.message:
                return parsed, result, tries
        if on_text:
            on_text(FALLBACK_ANSWER)
        return None, result, cfg.max_tries


def _digest(turns: list[Turn]) -> str:
    h = hashlib.sha256()
    for t in turns:
        h.update(f"{normalize_space(t.user)}\x1f{normalize_space(t.answer)}\x1e".encode())
    return h.hexdigest()


class _Looped(Exception):
    """Raised from the streaming callback to end a try whose answer loops."""


class _Try:
    """One generation: gets the raw chunks, streams the visible answer to `on_text`, and stops
    the generation (raising _Looped through it) as soon as the answer so far loops."""

    def __init__(self, stop: str, on_text: OnText | None):
        self.stop, self.on_text = stop, on_text
        self.filt = StreamFilter(stop, hold_repeats=True) if on_text else None
        self.raw, self.shown, self.chunks = "", "", 0

    def feed(self, chunk: str) -> None:
        self.raw += chunk
        self.chunks += 1  # about one per token
        if is_looped(parse_answer(self.raw, self.stop).message):
            raise _Looped
        if self.filt:
            self._show(self.filt.feed(chunk))

    def finish(self) -> None:
        if self.filt:
            self._show(self.filt.finish())

    def _show(self, visible: str) -> None:
        if visible:
            self.shown += visible
            self.on_text(visible)
