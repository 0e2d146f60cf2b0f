"""Certificates for the security tests, made with trustme: a root CA with an intermediate for servers (so that a
served chain that lacks the intermediate would not verify), a separate CA for charger certificates."""

from __future__ import annotations

import datetime as dt
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import trustme


@dataclass
class Pki:
    dir: Path
    root: trustme.CA = field(default_factory=trustme.CA)
    charger_ca: trustme.CA = field(default_factory=trustme.CA)
    other_ca: trustme.CA = field(default_factory=trustme.CA)

    def __post_init__(self) -> None:
        self.intermediate = self.root.create_child_ca()
        self.root_pem = self._write("root.pem", self.root.cert_pem.bytes())
        self.charger_ca_pem = self._write("charger-ca.pem", self.charger_ca.cert_pem.bytes())
        self.gw_cert, self.gw_key = self.server("gateway")
        self.csms_cert, self.csms_key = self.server("csms")

    def _write(self, name: str, data: bytes) -> str:
        p = self.dir / name
        p.write_bytes(data)
        return str(p)

    def server(self, name: str, days: int = 365) -> tuple[str, str]:
        """A server certificate for 127.0.0.1/localhost issued by the intermediate; chain file = leaf + intermediate."""
        now = dt.datetime.now(dt.UTC)
        leaf = self.intermediate.issue_cert(
            "127.0.0.1", "localhost", not_before=now - dt.timedelta(days=1), not_after=now + dt.timedelta(days=days)
        )
        chain = b"".join(b.bytes() for b in leaf.cert_chain_pems)  # leaf + intermediate (trustme omits the root)
        return self._write(f"{name}-chain.pem", chain), self._write(f"{name}.key", leaf.private_key_pem.bytes())

    def charger(
        self, cid: str, *, expired: bool = False, ca: trustme.CA | None = None, tag: str = ""
    ) -> tuple[str, str]:
        """A charger's client certificate (CN = ``cid``) and key."""
        now = dt.datetime.now(dt.UTC)
        if expired:
            nb, na = now - dt.timedelta(days=30), now - dt.timedelta(days=1)
        else:
            nb, na = now - dt.timedelta(days=1), now + dt.timedelta(days=365)
        leaf = (ca or self.charger_ca).issue_cert("charger.invalid", common_name=cid, not_before=nb, not_after=na)
        base = f"{cid}{tag}"
        cert = self._write(f"{base}.pem", b"".join(b.bytes() for b in leaf.cert_chain_pems))
        key = self._write(f"{base}.key", leaf.private_key_pem.bytes())
        return cert, key

    def charger_pem_bytes(self, path: str) -> bytes:
        return Path(path).read_bytes()

    def charger_dir(self, *cids: str) -> Path:
        """A per-charger certificate directory (``<id>.pem`` + ``<id>.key``) as ``backends.<name>.tls.cert_dir``."""
        d = self.dir / "chargers"
        d.mkdir(exist_ok=True)
        for cid in cids:
            cert, key = self.charger(cid)
            Path(cert).rename(d / f"{cid}.pem")
            Path(key).rename(d / f"{cid}.key")
        return d

    def client_context(self, cert: tuple[str, str] | None = None) -> ssl.SSLContext:
        """What a charger uses: trusts the root only (so the gateway must serve the intermediate)."""
        ctx = ssl.create_default_context(cafile=self.root_pem)
        if cert is not None:
            ctx.load_cert_chain(*cert)
        return ctx
