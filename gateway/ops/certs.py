"""Certificate files named in the config: existence, key match, chain order, expiry (check-config and metrics).

:func:`check_files` returns problems as ``(yaml path, message)`` pairs, split into errors (the gateway would not
start or would refuse every peer: missing file, key that does not match, expired certificate, broken chain) and
warnings (expiring within 30 days, verification toward a backend turned off, CRL past its next update).
:func:`expiry_by_name` gives the ``notAfter`` of every configured certificate file for
``ocppgw_certificate_expiry_seconds``. Uses ``cryptography`` to read certificates; nothing here opens a socket.
"""

from __future__ import annotations

import itertools
import os
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from gateway.app.credentials import YAML_LOADER
from gateway.config import Config

__all__ = ["CertFile", "FileProblems", "cert_files", "check_files", "expiry_by_name", "load_certs"]

EXPIRY_WARNING_S = 30 * 86400


@dataclass(frozen=True, slots=True)
class CertFile:
    name: str  # YAML path, e.g. "listen[1].tls.cert"; the metric label
    path: str
    key: str | None = None  # private key that must match (cert chains)
    kind: str = "chain"  # chain | ca | crl | dir


@dataclass
class FileProblems:
    errors: list[tuple[str, str]]
    warnings: list[tuple[str, str]]


def load_certs(path: str) -> list[x509.Certificate]:
    """Every PEM certificate in ``path`` (OSError / ValueError when unreadable or none)."""
    data = Path(path).read_bytes()
    certs = x509.load_pem_x509_certificates(data)
    if not certs:
        raise ValueError("no PEM certificate")
    return certs


def cert_files(config: Config) -> list[CertFile]:
    """Every certificate, CA bundle, CRL and certificate directory the config names."""
    out: list[CertFile] = []
    for i, lst in enumerate(config.all_listeners()):
        p = f"listen[{i}].tls" if config.listeners and len(config.listeners) > 1 else "listen.tls"
        if lst.tls is not None:
            out.append(CertFile(f"{p}.cert", lst.tls.cert, lst.tls.key))
            if lst.tls.client_ca:
                out.append(CertFile(f"{p}.client_ca", lst.tls.client_ca, kind="ca"))
            if lst.tls.crl:
                out.append(CertFile(f"{p}.crl", lst.tls.crl, kind="crl"))
    if config.admin.tls is not None:
        out.append(CertFile("admin.tls.cert", config.admin.tls.cert, config.admin.tls.key))
    for name, b in config.backends.items():
        p = f"backends.{name}.tls"
        if b.tls.ca:
            out.append(CertFile(f"{p}.ca", b.tls.ca, kind="ca"))
        if b.tls.cert:
            out.append(CertFile(f"{p}.cert", b.tls.cert, b.tls.key))
        if b.tls.cert_dir:
            out.append(CertFile(f"{p}.cert_dir", b.tls.cert_dir, kind="dir"))
    return out


def _dir_pairs(path: str) -> list[tuple[str, str]]:
    """(cert, key) paths of a per-charger directory: <id>.pem with <id>.key."""
    return [(str(f), str(f.with_suffix(".key"))) for f in sorted(Path(path).glob("*.pem"))]


def _not_after(c: x509.Certificate) -> float:
    return c.not_valid_after_utc.timestamp()


def _check_chain(name: str, cf_path: str, key: str | None, now: float, fp: FileProblems) -> float | None:
    """Check one certificate file (and its key); return the earliest notAfter in it."""
    try:
        certs = load_certs(cf_path)
    except (OSError, ValueError) as e:
        fp.errors.append((name, f"cannot read certificates from {cf_path}: {getattr(e, 'strerror', None) or e}"))
        return None
    if key is not None:
        if not os.path.isfile(key):
            fp.errors.append((name.rsplit(".", 1)[0] + ".key", f"no such file: {key}"))
        else:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            try:
                ctx.load_cert_chain(cf_path, key)
            except ssl.SSLError as e:
                fp.errors.append((name, f"private key {key} does not match the certificate ({e.reason})"))
            except OSError as e:
                fp.errors.append((name, f"cannot load {cf_path} with {key}: {e.strerror or e}"))
        # A chain file is served as is: each certificate must be issued by the next one.
        for child, parent in itertools.pairwise(certs):
            try:
                child.verify_directly_issued_by(parent)
            except (ValueError, TypeError, InvalidSignature):
                fp.errors.append(
                    (
                        name,
                        f"chain broken in {cf_path}: {child.subject.rfc4514_string()} is not issued by the next "
                        f"certificate {parent.subject.rfc4514_string()} (order: leaf first, then intermediates)",
                    )
                )
                break
    earliest = min(_not_after(c) for c in certs)
    for c in certs:
        left = _not_after(c) - now
        subject = c.subject.rfc4514_string()
        if left <= 0:
            fp.errors.append((name, f"certificate {subject} in {cf_path} expired {-left / 86400:.0f} days ago"))
        elif left < EXPIRY_WARNING_S:
            fp.warnings.append((name, f"certificate {subject} in {cf_path} expires in {left / 86400:.1f} days"))
        if c.not_valid_before_utc.timestamp() > now:
            fp.warnings.append((name, f"certificate {subject} in {cf_path} is not valid yet"))
    return earliest


def check_files(config: Config, now: float | None = None) -> tuple[FileProblems, dict[str, float]]:
    """Check every file the config names; also return ``{name: earliest notAfter}`` of the readable ones."""
    now = time.time() if now is None else now
    fp = FileProblems([], [])
    expiry: dict[str, float] = {}
    for cf in cert_files(config):
        if cf.kind == "dir":
            if not os.path.isdir(cf.path):
                fp.errors.append((cf.name, f"no such directory: {cf.path}"))
                continue
            pairs = _dir_pairs(cf.path)
            if not pairs:
                fp.warnings.append((cf.name, f"no <charger id>.pem files in {cf.path}"))
            times = [t for c, k in pairs if (t := _check_chain(cf.name, c, k, now, fp)) is not None]
            if times:
                expiry[cf.name] = min(times)
            continue
        if not os.path.isfile(cf.path):
            fp.errors.append((cf.name, f"no such file: {cf.path}"))
            continue
        if cf.kind == "crl":
            try:
                crl = x509.load_pem_x509_crl(Path(cf.path).read_bytes())
            except (OSError, ValueError) as e:
                fp.errors.append((cf.name, f"not a PEM CRL: {cf.path} ({e})"))
                continue
            nxt = crl.next_update_utc
            if nxt is not None and nxt.timestamp() < now:
                fp.warnings.append((cf.name, f"CRL {cf.path} is past its next update ({nxt.isoformat()})"))
            continue
        t = _check_chain(cf.name, cf.path, cf.key, now, fp)
        if t is not None:
            expiry[cf.name] = t
    for name, b in config.backends.items():
        if not b.tls.verify:
            fp.warnings.append((f"backends.{name}.tls.verify", "certificate verification toward this backend is OFF"))
    cred = config.security.credentials_file
    if cred:
        try:
            with open(cred, encoding="utf-8") as fh:
                yaml.load(fh, Loader=YAML_LOADER)  # a safe loader; the C one when PyYAML has it (10,000 chargers)
        except OSError as e:
            fp.errors.append(("security.credentials_file", f"cannot read {cred}: {e.strerror}"))
        except yaml.YAMLError:
            fp.errors.append(("security.credentials_file", f"{cred} is not valid YAML"))
    return fp, expiry


def expiry_by_name(config: Config) -> dict[str, float]:
    """``{config path: earliest notAfter (unix s)}`` for every readable certificate file the config names."""
    return check_files(config)[1]
