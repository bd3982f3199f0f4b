"""The answer of /v1/chat/completions in OpenAI's formats: one `chat.completion` body, or
server-sent `chat.completion.chunk` events ending with [DONE]; both carry ohlora's own
`ohlora` block (recalled and stored memories, guard, expression, ...).

`until_done` and `stream_events` also cancel the turn when the client hangs up, and commit what
it stores (the turn, its memories, its summary: one transaction) only when the client is still
there once the answer is complete: for a stream, after its last token has been sent and the
writer and the summary have run, right before the closing chunk (which reports what was stored)
and `[DONE]`, sent together. A client that hangs up before that has nothing stored, even if it
had every token; one cut after it had the closing chunk keeps its turn.
"""

from __future__ import annotations

import asyncio
import json
from typing import Callable

from fastapi import Request

from ohlora.chat import TurnResult
from ohlora.server.errors import ApiError
from ohlora.server.middleware import error_body
from ohlora.server.worker import Job, TurnCancelled

Commit = Callable[[TurnResult], TurnResult]
GONE = "the client closed the request; the turn was cancelled"


async def until_done(request: Request, job: Job, future, commit: Commit) -> TurnResult:
    """Wait for a non-streamed turn, cancelling it if the client hangs up meanwhile; commit it
    if the client is still there once it is done."""
    while True:
        done, _ = await asyncio.wait({future}, timeout=0.25)
        if done:
            break
        if await request.is_disconnected():
            job.cancel()
            break
    try:
        turn = await future
    except (TurnCancelled, asyncio.CancelledError):
        raise ApiError(499, GONE) from None
    if job.cancelled or await request.is_disconnected():  # gone while the writer and summary ran
        raise ApiError(499, GONE)
    return commit(turn)  # no await from here on: nothing cancels it halfway


def finish_reason(turn: TurnResult) -> str:
    return "length" if turn.finish_reason == "length" else "stop"


def ohlora_extra(turn: TurnResult) -> dict:
    d = turn.as_dict()
    return {"recalled": d["recalled"], "stored": d["stored"], "finish_reason": turn.finish_reason, "tries": turn.tries,
            "writer": d["writer"], "guard": d["guard"], "conversation": d["conversation"],
            "history_turns": d["history_turns"], "expression": d["expression"]}


def completion_body(cid: str, created: int, model: str, turn: TurnResult) -> dict:
    return {
        "id": cid, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": turn.answer},
                     "finish_reason": finish_reason(turn)}],
        "usage": {"prompt_tokens": 0, "completion_tokens": turn.n_tokens, "total_tokens": turn.n_tokens},
        "ohlora": ohlora_extra(turn),
    }


def _chunk(cid, created, model, delta: dict, finish=None, extra=None) -> str:
    body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if extra is not None:
        body["ohlora"] = extra
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


async def stream_events(cid, created, model, chunks: asyncio.Queue, future, job: Job, commit: Commit):
    """Server-sent events in OpenAI's chunk format, ending with [DONE]. If the client hangs up,
    Starlette cancels this generator: the turn is cancelled with it (dropped if still queued,
    stopped at its next token if running, never committed if it had finished)."""
    try:
        async for event in _events(cid, created, model, chunks, future, job, commit):
            yield event
    finally:
        job.cancel()  # a no-op for a turn that was committed


async def _events(cid, created, model, chunks: asyncio.Queue, future, job: Job, commit: Commit):
    yield _chunk(cid, created, model, {"role": "assistant", "content": ""})
    while True:
        getter = asyncio.ensure_future(chunks.get())
        try:
            done, _ = await asyncio.wait({getter, future}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # the client hung up: leave no task behind
            getter.cancel()
            raise
        if getter in done:
            yield _chunk(cid, created, model, {"content": getter.result()})
            continue
        getter.cancel()
        break
    while not chunks.empty():  # text queued just before the turn ended
        yield _chunk(cid, created, model, {"content": chunks.get_nowait()})
    try:
        turn = future.result()
        if job.cancelled:
            raise TurnCancelled()
        # every token has been sent and the client is still here: store the turn now, with no
        # await between this and the closing chunk (a hang-up cancels this generator at an await)
        commit(turn)
    except Exception as e:  # the stream has started: report in-band, OpenAI style
        yield f"data: {json.dumps(error_body(str(e) or type(e).__name__, 'server_error'), ensure_ascii=False)}\n\n"
        yield "data: [DONE]\n\n"
    else:
        yield _chunk(cid, created, model, {}, finish_reason(turn), ohlora_extra(turn)) + "data: [DONE]\n\n"
