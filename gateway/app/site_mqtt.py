"""A site's MQTT topics (its meter, its demand-response events): one subscription per site, kept up with back-off.

Library: aiomqtt (the asyncio client of the paho-mqtt project's maintainers' ecosystem, formerly asyncio-mqtt;
pure Python, one dependency, paho-mqtt; 16 kB + 77 kB of wheels). It is imported only by a process whose config
has a site with ``mqtt``. Every node subscribes (cheap: a reading is a few bytes), so that a node taking over a
site's lease has a warm reading at once; only the site's controller uses it. Messages are handed, as bytes, to
the callback of their topic, synchronously: nothing is awaited per message.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from gateway.tasks import stop_task

__all__ = ["MqttFeed"]

#: back-off between reconnection attempts, from the first to the longest
_RETRY_S = (0.5, 30.0)


class MqttFeed:
    """Subscribe to ``topics`` on the broker at ``url`` (``mqtt://`` or ``mqtts://``, credentials in the URL) until
    :meth:`close`."""

    def __init__(self, url: str, topics: Mapping[str, Callable[[bytes], None]], log: Any, client_id: str) -> None:
        self.url = url
        self.topics = dict(topics)
        self.log = log
        self.client_id = client_id
        #: set while subscribed (tests and the admin API look)
        self.subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"mqtt:{self.client_id}")

    async def close(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)

    async def _run(self) -> None:
        import aiomqtt  # only a process with an MQTT site pays for the import

        u = urlsplit(self.url)
        tls = ssl.create_default_context() if u.scheme == "mqtts" else None
        port = u.port or (8883 if tls is not None else 1883)
        delay, failing = _RETRY_S[0], False
        log = self.log
        while True:
            try:
                async with aiomqtt.Client(
                    u.hostname or "127.0.0.1", port, identifier=self.client_id, tls_context=tls,
                    username=unquote(u.username) if u.username else None,
                    password=unquote(u.password) if u.password else None,
                ) as client:  # fmt: skip
                    for topic in self.topics:
                        await client.subscribe(topic, qos=1)
                    self.subscribed.set()
                    if failing:
                        log.info("site_mqtt_recovered")
                    failing, delay = False, _RETRY_S[0]
                    async for message in client.messages:
                        handler = self.topics.get(str(message.topic))
                        payload = message.payload
                        if handler is None:
                            continue
                        if isinstance(payload, str):
                            payload = payload.encode()
                        elif not isinstance(payload, bytes | bytearray):
                            payload = str(payload).encode() if payload is not None else b""
                        handler(bytes(payload))
            except aiomqtt.MqttError as e:
                self.subscribed.clear()
                if not failing:
                    log.warning("site_mqtt_unavailable", broker=f"{u.hostname}:{port}", error=str(e))
                    failing = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_S[1])
