"""Test certificates made at test time with the openssl CLI: a CA, a server certificate for
localhost and 127.0.0.1, a client certificate, and a second CA with its own client (rogue)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class Pair:
    """A certificate and its private key (PEM files)."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Certs:
    """Everything a TLS/mTLS test needs."""

    ca: Path
    server: Pair
    client: Pair
    rogue_ca: Path
    rogue_client: Pair


def _openssl(*args: str | Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise FileNotFoundError("openssl is not installed (apt-get install -y openssl)")
    subprocess.run([binary, *map(str, args)], check=True, capture_output=True)


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    _openssl("req", "-x509", *EC, "-keyout", key, "-out", cert, "-days", "2",
             "-subj", f"/CN={name}")  # fmt: skip
    return cert, key


def _issued(directory: Path, name: str, ca: tuple[Path, Path], extensions: str) -> Pair:
    cert, key, csr = (directory / f"{name}{suffix}" for suffix in (".crt", ".key", ".csr"))
    ext = directory / f"{name}.ext"
    ext.write_text(extensions + "\nbasicConstraints=CA:FALSE\n")
    _openssl("req", *EC, "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
    _openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
             "-out", cert, "-days", "2", "-extfile", ext)  # fmt: skip
    return Pair(cert, key)


def make_certs(directory: Path) -> Certs:
    """Writes the certificates into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _ca(directory, "test-ca")
    rogue = _ca(directory, "rogue-ca")
    server = _issued(directory, "server", ca,
                     "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth")  # fmt: skip
    client = _issued(directory, "client", ca, "extendedKeyUsage=clientAuth")
    rogue_client = _issued(directory, "rogue-client", rogue, "extendedKeyUsage=clientAuth")
    return Certs(ca[0], server, client, rogue[0], rogue_client)
