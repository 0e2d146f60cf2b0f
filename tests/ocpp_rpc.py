"""ocpp-rpc (npm) as charger and CSMS: ``tests/interop/charger.js`` and ``csms.js`` run by node, each a strict OCPP-J
implementation of its own (another language, another JSON schema validator) that prints one JSON line per event.

:class:`NodePeer` runs one of them and keeps its events; :meth:`NodePeer.problems` are the events a correct peer on
the other side never causes (ocpp-rpc's strict-mode rejections, frames it found malformed, CALLs it had no handler
for), each test asserts there are none.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Self

import pytest

INTEROP = Path(__file__).parent / "interop"
#: events that mean the peer refused something it received (or was about to send)
PROBLEMS = frozenset({"strict_failure", "bad_message", "unhandled", "connect_failed"})

Event = dict[str, Any]


def node_or_skip() -> str:
    """The node executable; skips the test when there is none, fails when ocpp-rpc is not installed."""
    node = shutil.which("node")
    if node is None:
        pytest.skip(
            "node not on PATH: the ocpp-rpc interop tests need Node.js >= 17.3 (scripts/test.sh then installs it)"
        )
    if not (INTEROP / "node_modules" / "ocpp-rpc" / "package.json").is_file():
        pytest.fail(
            "ocpp-rpc is not installed in tests/interop/node_modules: run scripts/interop-deps.sh (test.sh does)"
        )
    return node


class PeerExited(AssertionError):
    pass


class NodePeer:
    """One node process (charger.js or csms.js): its events as they arrive, commands over stdin."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process) -> None:
        self.name = name
        self.proc = proc
        self.events: list[Event] = []
        self.stderr = b""
        self._refs = itertools.count(1)
        self._changed = asyncio.Event()
        self._exited = False
        self._tasks = [asyncio.create_task(self._read_stdout()), asyncio.create_task(self._read_stderr())]

    @classmethod
    async def start(cls, script: str, *args: str) -> Self:
        proc = await asyncio.create_subprocess_exec(
            node_or_skip(),
            str(INTEROP / script),
            *args,
            cwd=INTEROP,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(f"{script} {' '.join(args)}", proc)

    async def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            try:
                self.events.append(json.loads(line))
            except ValueError:
                self.events.append({"event": "not_json", "line": line.decode(errors="replace")})
            self._changed.set()
        self._exited = True
        self._changed.set()

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = await self.proc.stderr.read()

    def transcript(self) -> str:
        lines = [json.dumps(e)[:400] for e in self.events]
        err = self.stderr.decode(errors="replace").strip()
        return f"{self.name}:\n  " + "\n  ".join(lines) + (f"\n  stderr: {err}" if err else "")

    def of(self, event: str, **match: Any) -> list[Event]:
        return [e for e in self.events if e["event"] == event and all(e.get(k) == v for k, v in match.items())]

    def problems(self) -> list[Event]:
        return [e for e in self.events if e["event"] in PROBLEMS]

    async def wait(self, predicate: Callable[[Event], bool], timeout: float = 10.0) -> Event:
        """The first event (already seen or still to come) for which ``predicate`` holds."""
        seen = 0
        async with asyncio.timeout(timeout):
            while True:
                for event in self.events[seen:]:
                    if predicate(event):
                        return event
                seen = len(self.events)
                if self._exited:
                    raise PeerExited(f"the peer exited before the event waited for\n{self.transcript()}")
                self._changed.clear()
                await self._changed.wait()

    async def wait_for(self, event: str, timeout: float = 10.0, **match: Any) -> Event:
        return await self.wait(lambda e: e["event"] == event and all(e.get(k) == v for k, v in match.items()), timeout)

    async def command(self, op: str, timeout: float = 10.0, **fields: Any) -> Event:
        """Send one command; its ``done`` event (``response`` or ``error``)."""
        assert self.proc.stdin is not None
        ref = next(self._refs)
        self.proc.stdin.write(json.dumps({"op": op, "ref": ref, **fields}).encode() + b"\n")
        await self.proc.stdin.drain()
        return await self.wait_for("done", timeout, ref=ref)

    async def stop(self) -> None:
        """End of stdin (the peer closes its connections and exits), killed if it does not within 5 s."""
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        try:
            async with asyncio.timeout(5):
                await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        for task in self._tasks:
            await task


class RpcCsms(NodePeer):
    """csms.js: ``url`` is the base URL a backend config points at."""

    url = ""

    async def call(self, identity: str, action: str, params: dict[str, Any]) -> Event:
        return await self.command("call", identity=identity, action=action, params=params)

    def calls(self, identity: str, action: str) -> list[Event]:
        """CALLs ``action`` the CSMS got from ``identity``, each with the ``params`` and the ``reply`` it sent."""
        return self.of("call", identity=identity, action=action)


class RpcCharger(NodePeer):
    """charger.js."""

    def answers(self) -> list[Event]:
        """The answers to the charger's own story, in order (not those to triggered messages)."""
        return [e for e in self.of("answer") if not e.get("triggered")]

    def handled(self, action: str) -> list[Event]:
        """CSMS-initiated CALLs ``action`` the charger got, each with the ``params`` and the ``reply`` it sent."""
        return self.of("call", action=action)

    def sent(self) -> list[Event]:
        """The CALLs the charger sent, in order, each with its ``messageId`` and ``action``."""
        return self.of("sent")


@contextlib.asynccontextmanager
async def rpc_csms(*subprotocols: str) -> AsyncIterator[RpcCsms]:
    peer = await RpcCsms.start("csms.js", ",".join(subprotocols))
    try:
        listening = await peer.wait_for("listening")
        peer.url = f"ws://127.0.0.1:{listening['port']}/ocpp"
        yield peer
    finally:
        await peer.stop()


@contextlib.asynccontextmanager
async def rpc_charger(
    url: str, cid: str, subprotocol: str, mode: str = "story", reconnect: bool = False
) -> AsyncIterator[RpcCharger]:
    """An ocpp-rpc charger connected to ``url/cid``, running its story (``mode="idle"``: only connected);
    ``reconnect``: it opens a lost connection again by itself."""
    peer = await RpcCharger.start("charger.js", url, cid, subprotocol, mode, *(["reconnect"] if reconnect else []))
    try:
        await peer.wait(lambda e: e["event"] in ("open", "connect_failed"))
        yield peer
    finally:
        await peer.stop()
