"""Session invariants over real sockets, for any frames a charger sends (hypothesis).

One real gateway per set-up (1.6 and 2.0.1 pass-through, set-ups A and B) on loopback, a stand-in CSMS
(:class:`tests.helpers.StubCsms`, answering every CALL validly for its version) and a raw WebSocket charger (aiohttp)
that sends what :func:`tests.wire_strategies.frames` draws: valid CALLs of real actions with payloads drawn from the
official schemas, and CALLs broken in one way each (unique ids of every length and type, message types, array
lengths, actions, payloads, broken JSON, huge numbers, deep nesting and big strings within ``max_frame_bytes``,
duplicate keys, lone surrogates, NaN, non-UTF-8 bytes in a text frame, answers to CALLs nobody sent), up to three
per example, then a Heartbeat; in some examples the stand-in first sends a Reset, which the charger answers with
drawn answers (well-formed or broken, :func:`tests.wire_strategies.answers`) and then a well-formed one.
:func:`tests.wire_strategies.expectation` says from a frame's bytes alone what answer it must get. The invariants,
checked after every example:

1. no frame makes a callback raise: no traceback or exception logged (picows and asyncio log them through
   ``logging``), ``ocppgw_internal_errors_total`` stays 0, the charger is not closed (1011 or any other code; a
   text frame that is not UTF-8 must close it with 1007, RFC 6455 §8.1) and the gateway's link to the CSMS is not
   dropped;
2. nothing malformed reaches the CSMS: every frame the stand-in gets is well-formed OCPP-J, in pass-through every
   CALL it gets is byte for byte one the charger sent, and its own CALL gets exactly one answer;
3. every CALL with a readable unique id gets exactly one answer (CALLRESULT or CALLERROR) within
   :data:`ANSWER_TIMEOUT_S` (under ``"-1"`` when the id has more than 36 characters), frames without one (and
   answers to CALLs nobody sent) get none, and every frame the charger gets is well-formed;
4. the session keeps serving: the final Heartbeat is answered.

JSON that the gateway's parser refuses, as RFC 8259 §9 allows (a number no double holds, a lone surrogate escape,
nesting beyond 1024), is answered as a broken frame: under its unique id read as a JSON string (``"\\u00e9x"`` is
``"éx"``). A charger's CALLERROR without its ErrorDetails object (``[4, id, code, description]``) reaches the CSMS
with ``{}`` added (OCPP-J requires the five elements). Tests at the end pin each of these edges.

Duplicate keys are valid JSON (RFC 8259 §4: names SHOULD be unique): such a CALL is answered, forwarded as sent or
refused where the gateway reads its payload.

The gateway and the peers run on a loop in a background thread, so that hypothesis drives plain test functions
and one gateway serves every example of a set-up (module scope); no shrinking, so a failure costs bounded time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import itertools
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from gateway.ops.lifecycle import Running, running_gateway
from tests.helpers import StubCsms, make_config
from tests.peers import now_iso
from tests.wire_strategies import ANSWER_TEMPLATES, answers, expectation, frame_problem, frames, strict_loads

T = TypeVar("T")

EXAMPLES = 150
#: how long an answer may take: generous, since CI shares this machine (a missing answer only costs a failing run time)
ANSWER_TIMEOUT_S = 5.0
MAX_FRAME = 65536
#: the charger's OCPP version and the backend's, per set-up
SETUPS = {
    "pass-1.6": ("1.6", "1.6"),
    "pass-2.0.1": ("2.0.1", "2.0.1"),
    "A-1.6-to-2.0.1": ("1.6", "2.0.1"),
    "B-2.0.1-to-1.6": ("2.0.1", "1.6"),
}


def stand_in_answer(version: str) -> Callable[[str, str, dict[str, Any]], dict[str, Any]]:
    """Valid answers of a ``version`` CSMS (what the translating set-ups need to get past the answer)."""
    ids = itertools.count(1)

    def answer(_cid: str, action: str, _payload: dict[str, Any]) -> dict[str, Any]:
        if action == "BootNotification":
            return {"status": "Accepted", "currentTime": now_iso(), "interval": 300}
        if action == "Heartbeat":
            return {"currentTime": now_iso()}
        if action in ("DataTransfer", "SignCertificate"):
            return {"status": "Accepted"}
        if version == "1.6" and action == "StartTransaction":
            return {"transactionId": next(ids), "idTagInfo": {"status": "Accepted"}}
        if version == "1.6" and action in ("Authorize", "StopTransaction"):
            return {"idTagInfo": {"status": "Accepted"}}
        if version != "1.6" and action == "Authorize":
            return {"idTokenInfo": {"status": "Accepted"}}
        return {}

    return answer


class Tracebacks(logging.Handler):
    """Log records of errors and exceptions from any logger (picows, asyncio, aiohttp): a callback raised. (picows
    logs an exception from a client-side frame callback, the gateway's link, as a warning without traceback.)"""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        if record.exc_info is not None or record.levelno >= logging.ERROR or "exception" in text.lower():
            self.records.append(f"{record.name}: {text}")


# ----------------------------------------------------------------------------------------------- the charger


class RawCharger:
    """One WebSocket to the gateway: every answer it got, CALLs from the gateway refused, frames it could not read."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, cid: str) -> None:
        self.ws = ws
        self.cid = cid
        self.answers: list[list[Any]] = []
        self.problems: list[str] = []
        self.close_code: int | None = None
        self.closed = False
        #: answers (templates, tests.wire_strategies.ANSWER_TEMPLATES) for the next CALL the gateway sends
        self.script: list[str] = []
        self._changed = asyncio.Event()
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                problem = frame_problem(msg.data)
                if problem is not None:
                    self.problems.append(f"{problem}: {msg.data[:300]!r}")
                else:
                    frame = json.loads(msg.data)
                    if frame[0] == 2 and self.script:  # a CSMS CALL the example answers
                        script, self.script = self.script, []
                        for template in script:
                            await self.ws.send_str(template.replace("@@UID@@", json.dumps(frame[1])))
                    elif frame[0] == 2:  # the gateway's own CALL (translated set-ups): refused, not an answer
                        await self.ws.send_str(json.dumps([4, frame[1], "NotImplemented", "raw charger", {}]))
                    else:
                        self.answers.append(frame)
            else:
                self.problems.append(f"{msg.type.name} frame: {str(msg.data)[:300]}")
            self._changed.set()
        self.closed = True
        self.close_code = self.ws.close_code
        self._changed.set()

    async def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not (predicate() or self.closed):
                    self._changed.clear()
                    await self._changed.wait()
        return predicate()

    async def send(self, data: bytes) -> bool:
        try:
            await self.ws.send_frame(data, aiohttp.WSMsgType.TEXT)
        except ConnectionError:
            return False
        return True


@dataclass
class Outcome:
    """What one example's frames led to, seen from the charger and the stand-in CSMS."""

    answers: list[list[Any]]
    charger_problems: list[str]
    stub_texts: list[str]
    #: unique ids of frames that must be answered and were not, within ANSWER_TIMEOUT_S
    unanswered: list[str]
    served: bool
    #: the unique id of the final Heartbeat
    barrier: str
    close_code: int | None
    closed: bool
    tracebacks: list[str]
    internal_errors: float
    links_dropped: int
    #: the charger's frames, in pass-through: what the stand-in may get
    sent: set[bytes] = field(default_factory=set)
    #: answers the stand-in got to its own CALL (when the example had one)
    csms_answers: list[list[Any]] | None = None


# --------------------------------------------------------------------------------------------------- the rig


class Rig:
    """A gateway for one set-up, its stand-in CSMS and the raw charger, on a loop in a background thread."""

    def __init__(self, name: str, charger_version: str, backend_version: str, tracebacks: Tracebacks) -> None:
        self.name = name
        self.charger_version = charger_version
        self.backend_version = backend_version
        self.translated = charger_version != backend_version
        self.tracebacks = tracebacks
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"rig-{name}", daemon=True)
        self.thread.start()
        self.stub = StubCsms(answer=stand_in_answer(backend_version))
        self.charger: RawCharger | None = None
        self.sessions = 0
        self.seq = itertools.count(1)
        self._ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._serving = asyncio.run_coroutine_threadsafe(self._serve(), self.loop)
        self._ready.result(30)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        try:
            await self.stub.start()
            config = make_config(
                {"csms": {"url": self.stub.url, "ocpp": self.backend_version}},
                listen={"max_frame_bytes": MAX_FRAME},
                session={"call_timeout_s": 10},
            )
            async with running_gateway(config) as gw, aiohttp.ClientSession() as http:
                self.gw: Running = gw
                self.http = http
                self._ready.set_result(None)
                await self._stop.wait()
                if self.charger is not None:
                    await self.charger.ws.close()
                    await self.charger.reader
        except BaseException as e:
            if not self._ready.done():
                self._ready.set_exception(e)
            raise
        finally:
            await self.stub.stop()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._serving.result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def internal_errors(self) -> float:
        (metric,) = self.gw.hub.metrics.internal_errors.collect()
        return sum(s.value for s in metric.samples if s.name.endswith("_total"))

    async def _connect(self) -> RawCharger:
        if self.charger is not None and not self.charger.closed:
            await self.charger.ws.close()
            await self.charger.reader
        self.sessions += 1
        cid = f"PROP-{self.name}-{self.sessions}"
        protocol = "ocpp1.6" if self.charger_version == "1.6" else "ocpp2.0.1"
        ws = await self.http.ws_connect(f"{self.gw.charger_url()}/{cid}", protocols=(protocol,), max_msg_size=0)
        assert ws.protocol == protocol
        self.charger = RawCharger(ws, cid)
        return self.charger

    def exchange(self, data: list[bytes], script: list[str] | None = None) -> Outcome:
        """Send ``data`` (waiting for each answer a frame must get), then a Heartbeat; what came of it. With
        ``script``, the stand-in first sends a Reset, which the charger answers with ``script``."""
        return self.run(self._exchange(data, script))

    async def _csms_call(self, c: RawCharger, script: list[str]) -> list[list[Any]]:
        """The stand-in's Reset, answered by the charger with ``script``: the answers the stand-in got."""
        uid = f"csms-{next(self.seq)}"
        texts = len(self.stub.texts)

        def answers() -> list[list[Any]]:
            got = [lenient(t) for _, t in self.stub.texts[texts:]]
            return [f for f in got if type(f) is list and len(f) > 1 and f[0] in (3, 4) and f[1] == uid]

        c.script = script
        reset = {"type": "Soft"} if self.backend_version == "1.6" else {"type": "Immediate"}
        await self.stub.sockets[c.cid].send_str(json.dumps([2, uid, "Reset", reset]))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ANSWER_TIMEOUT_S):
                while not answers():
                    self.stub.frame_event.clear()
                    await self.stub.frame_event.wait()
        return answers()

    async def _exchange(self, data: list[bytes], script: list[str] | None = None) -> Outcome:
        c = self.charger
        if c is None or c.closed:
            c = await self._connect()
        answers, problems, texts = len(c.answers), len(c.problems), len(self.stub.texts)
        links, sessions = len(self.stub.connects), self.sessions
        logged, internal = len(self.tracebacks.records), self.internal_errors()
        csms_answers = None if script is None else await self._csms_call(c, script)

        def answered(uid: str) -> Callable[[], bool]:
            return lambda: any(a[1] == uid for a in c.answers[answers:])

        unanswered = []
        for frame in data:
            exp = expectation(frame)
            if not await c.send(frame):
                break
            uid = exp.unique_id
            if exp.answer == "one" and uid is not None and not await c.wait(answered(uid), ANSWER_TIMEOUT_S):
                unanswered.append(uid)
            if c.closed:
                break
        barrier = f"barrier-{next(self.seq)}"
        served = (
            not c.closed
            and await c.send(json.dumps([2, barrier, "Heartbeat", {}]).encode())
            and await c.wait(answered(barrier), ANSWER_TIMEOUT_S)
        )
        dropped = (len(self.stub.connects) - links) - (self.sessions - sessions)
        if unanswered or not served or dropped or c.closed or len(self.tracebacks.records) > logged:
            self.charger = None  # a late answer must not land in the next example: a new session for it
            if not c.closed:
                await c.ws.close()
                await c.reader
            # A future whose exception nobody retrieved is logged when it is collected: here, in this example, on
            # this thread. (Collected in pytest's thread while it parses source for a report, its traceback, which
            # parses source too, trips CPython 3.11's "AST constructor recursion depth mismatch", gh-106905.)
            gc.collect()
        return Outcome(
            answers=c.answers[answers:],
            charger_problems=c.problems[problems:],
            stub_texts=[t for _, t in self.stub.texts[texts:]],
            unanswered=unanswered,
            served=bool(served),
            barrier=barrier,
            close_code=c.close_code,
            closed=c.closed,
            tracebacks=self.tracebacks.records[logged:],
            internal_errors=self.internal_errors() - internal,
            links_dropped=dropped,
            sent={*data, json.dumps([2, barrier, "Heartbeat", {}]).encode()},
            csms_answers=csms_answers,
        )


@pytest.fixture(scope="module")
def rigs() -> Iterator[Callable[[str], Rig]]:
    """One rig per set-up, started on first use, for the whole module; tracebacks collected from every logger."""
    tracebacks = Tracebacks()
    logging.getLogger().addHandler(tracebacks)
    made: dict[str, Rig] = {}

    def get(setup: str) -> Rig:
        if setup not in made:
            made[setup] = Rig(setup, *SETUPS[setup], tracebacks)
        return made[setup]

    try:
        yield get
    finally:
        for rig in made.values():
            rig.close()
        logging.getLogger().removeHandler(tracebacks)


# ------------------------------------------------------------------------------------------------ invariants


def lenient(text: str) -> Any:
    try:
        return strict_loads(text)
    except ValueError:
        return None


def check_invariants(rig: Rig, data: list[bytes], out: Outcome) -> None:
    expected = [expectation(d) for d in data]
    non_utf8 = any(e.non_utf8 for e in expected)

    # 2. nothing malformed reaches the CSMS
    malformed = [(frame_problem(t), t[:300]) for t in out.stub_texts if frame_problem(t) is not None]
    assert not malformed, f"malformed frames reached the CSMS: {malformed}"
    if not rig.translated:
        forwarded = [t for t in out.stub_texts if json.loads(t)[0] == 2]
        altered = [t[:300] for t in forwarded if t.encode() not in out.sent]
        assert not altered, f"pass-through CALLs that are not byte for byte the charger's: {altered}"

    if out.csms_answers is not None:
        assert len(out.csms_answers) == 1, f"the CSMS's CALL got {len(out.csms_answers)} answers: {out.csms_answers}"

    # 3. answers: well-formed, each to a frame that asked for it, as many as promised
    assert not out.charger_problems, f"the charger got frames it cannot read: {out.charger_problems}"
    got = Counter(a[1] for a in out.answers)
    must = Counter(e.unique_id for e in expected if e.answer == "one")
    must[out.barrier] += 1
    may = Counter(e.unique_id for e in expected if e.answer == "maybe" and e.unique_id is not None)
    unexpected = {uid: n for uid, n in got.items() if n > must[uid] + may[uid]}
    assert not unexpected, f"answers nobody asked for, or more than one per CALL: {unexpected}; got {out.answers}"
    # 1. no callback raised
    assert not out.tracebacks, "a callback raised:\n" + "\n".join(out.tracebacks)
    assert out.internal_errors == 0, "ocppgw_internal_errors_total went up"
    assert out.links_dropped == 0, "the gateway's link to the CSMS was dropped"
    if non_utf8:
        assert (out.closed, out.close_code) == (True, 1007), "a non-UTF-8 text frame must fail the connection (1007)"
        return
    assert not out.closed, f"the gateway closed the charger with {out.close_code}"
    # 3. (bounded) and 4. the session keeps serving
    assert not out.unanswered, f"CALLs without an answer within {ANSWER_TIMEOUT_S} s: {out.unanswered}"
    assert out.served, "the final Heartbeat was not answered: the session stopped serving"


@pytest.mark.slow
@pytest.mark.parametrize("setup", SETUPS)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    # no shrinking: a failing example (at most 3 frames) is reported as drawn, in bounded time (one that waited for
    # an answer costs ANSWER_TIMEOUT_S, and shrinking would replay hundreds)
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
@given(data=st.data())
def test_any_frames_keep_the_session_invariants(rigs: Callable[[str], Rig], setup: str, data: st.DataObject) -> None:
    rig = rigs(setup)
    sent = data.draw(st.lists(frames(rig.charger_version), min_size=1, max_size=3), label="frames")
    script = data.draw(st.none() | answers(), label="the charger's answers to a CSMS Reset first")
    check_invariants(rig, sent, rig.exchange(sent, script))


# ------------------------------------------------------------------------------------------------- edges


@pytest.mark.parametrize("setup", ["pass-1.6", "A-1.6-to-2.0.1"])
def test_non_utf8_text_frame_fails_the_connection_with_1007(rigs: Callable[[str], Rig], setup: str) -> None:
    rig = rigs(setup)
    out = rig.exchange([b'[2,"utf8-1","Heartbeat",{"x":"\xff"}]'])
    assert out.stub_texts == [] or all(b"\xff" not in t.encode() for t in out.stub_texts)
    assert (out.closed, out.close_code) == (True, 1007), f"served={out.served} answers={out.answers}"


@pytest.mark.parametrize("setup", SETUPS)
def test_call_with_unique_id_over_36_characters_gets_one_callerror(rigs: Callable[[str], Rig], setup: str) -> None:
    rig = rigs(setup)
    uid = "x" * 37
    out = rig.exchange([json.dumps([2, uid, "Heartbeat", {}]).encode()])
    assert out.served and not [t for t in out.stub_texts if uid in t]
    assert [a[0] for a in out.answers if a[1] == "-1"] == [4], f"answers: {out.answers}"


@pytest.mark.parametrize(
    ("setup", "frame"),
    [
        pytest.param(
            "A-1.6-to-2.0.1",
            b'[2,"huge-1","MeterValues",{"connectorId":1,"meterValue":[{"timestamp":"2024-01-01T00:00:00Z",'
            b'"sampledValue":[{"value":"1e40","unit":"kWh"}]}]}]',
            id="A-decimal-text-1e40-kWh",
        ),
        pytest.param(
            "B-2.0.1-to-1.6",
            b'[2,"huge-2","TransactionEvent",{"eventType":"Started","timestamp":"2024-01-01T00:00:00Z",'
            b'"triggerReason":"Authorized","seqNo":0,"transactionInfo":{"transactionId":"T-huge"},'
            b'"idToken":{"idToken":"TAG","type":"ISO14443"},"meterValue":[{"timestamp":"2024-01-01T00:00:00Z",'
            b'"sampledValue":[{"value":1.0,"unitOfMeasure":{"unit":"Wh","multiplier":50}}]}]}]',
            id="B-multiplier-50",
        ),
        pytest.param(  # raises in the link's frame callback, once the CSMS answered the synthesised Started
            "A-1.6-to-2.0.1",
            b'[2,"huge-3","StopTransaction",{"transactionId":4711,"meterStop":2000,"timestamp":"2024-01-01T00:00:00Z",'
            b'"transactionData":[{"timestamp":"2024-01-01T00:00:00Z","sampledValue":[{"value":"1e40"}]}]}]',
            id="A-stop-transaction-data-1e40",
        ),
    ],
)
def test_huge_meter_value_in_a_translated_session_is_answered_and_the_session_goes_on(
    rigs: Callable[[str], Rig], setup: str, frame: bytes
) -> None:
    out = rigs(setup).exchange([frame])
    assert not out.tracebacks, "\n".join(out.tracebacks)
    assert not out.closed, f"the gateway closed the charger with {out.close_code}"
    assert not out.links_dropped, "the gateway's link to the CSMS was dropped"
    assert out.served and not out.unanswered, f"answers: {out.answers}"


@pytest.mark.parametrize("value", ["1e400", '"\\ud800"', "[" * 1100 + "]" * 1100])
def test_json_beyond_the_parsers_limits_with_an_escaped_unique_id_gets_a_callerror(
    rigs: Callable[[str], Rig], value: str
) -> None:
    # valid JSON (RFC 8259), which §9 lets a parser refuse: the unique id can still be read, "\u00e9x" is "éx"
    out = rigs("pass-1.6").exchange([f'[2,"\\u00e9x","Heartbeat",{{"n":{value}}}]'.encode()])
    assert out.served and out.stub_texts[:-1] == []
    assert [a[0] for a in out.answers if a[1] == "éx"] == [4], f"answers: {out.answers}"


@pytest.mark.parametrize("setup", ["pass-1.6", "pass-2.0.1"])
def test_callerror_without_error_details_does_not_reach_the_csms_as_is(rigs: Callable[[str], Rig], setup: str) -> None:
    out = rigs(setup).exchange([], ['[4,@@UID@@,"NotSupported","no details"]', ANSWER_TEMPLATES[0]])
    assert out.served and out.csms_answers is not None and len(out.csms_answers) == 1
    assert [frame_problem(t) for t in out.stub_texts] == [None] * len(out.stub_texts), out.stub_texts
