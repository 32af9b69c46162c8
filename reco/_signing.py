"""Bundle signatures: an HMAC-SHA256 of manifest.json's bytes, written beside it by training
and the compiler with a secret key, checked by the server before it reads anything else.

What it stops: someone who can write under the bundle root but cannot read the key (a shared
artifact volume, a compromised upload path) cannot make the server load their files. Changing
any listed file changes its sha256, so the manifest must change, and a changed manifest fails
the HMAC. What it does not stop: anyone holding the key (or able to run training or the
compiler with it), rollback to an older bundle that was validly signed, or an attacker who can
already write the server's code, its Python environment or its process memory.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

SIGNATURE_FILE = "manifest.json.sig"
ALGORITHM = "HMAC-SHA256"
KEY_FILE_ENV = "RECO_BUNDLE_KEY_FILE"
KEY_ENV = "RECO_BUNDLE_KEY"
# A key shorter than this is refused: an HMAC is only as strong as its key.
MIN_KEY_CHARS = 32
_KEY_ID_LABEL = b"reco bundle key id"

log = logging.getLogger(__name__)


class SigningKeyError(Exception):
    """The signing key cannot be used (missing, unreadable, too short, given twice)."""


class SignatureError(Exception):
    """A manifest is unsigned, signed with another key, or modified after signing."""


@dataclass(frozen=True)
class SigningKey:
    """A secret key and where it came from (for messages; the secret never appears in them)."""

    secret: bytes = field(repr=False)
    source: str

    @property
    def key_id(self) -> str:
        """A short public name of the key (an HMAC of a label, so it reveals nothing)."""
        return hmac.new(self.secret, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]

    def sign(self, manifest_bytes: bytes) -> bytes:
        """The signature file's contents for these exact manifest bytes."""
        record = {
            "algorithm": ALGORITHM,
            "key_id": self.key_id,
            "manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest(),
            "hmac": self._mac(manifest_bytes),
        }
        return (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()

    def verify(self, manifest_bytes: bytes, signature: bytes | None) -> None:
        """Raises SignatureError unless `signature` is this key's HMAC of `manifest_bytes`."""
        if signature is None:
            raise SignatureError(f"{SIGNATURE_FILE} is missing: the manifest is not signed")
        try:
            record = json.loads(signature)
            algorithm, key_id, mac = record["algorithm"], record["key_id"], record["hmac"]
        except (ValueError, KeyError, TypeError):
            raise SignatureError(f"{SIGNATURE_FILE} is not a signature record") from None
        if algorithm != ALGORITHM or not isinstance(mac, str):
            raise SignatureError(f"{SIGNATURE_FILE} uses {str(algorithm)[:32]!r}, not {ALGORITHM}")
        if hmac.compare_digest(mac.encode(), self._mac(manifest_bytes).encode()):
            return
        if key_id != self.key_id:
            raise SignatureError(
                f"{SIGNATURE_FILE} was made with another key (key id {str(key_id)[:16]}, "
                f"this key is {self.key_id})"
            )
        raise SignatureError(f"{SIGNATURE_FILE} does not match manifest.json (changed since)")

    def _mac(self, data: bytes) -> str:
        return hmac.new(self.secret, data, hashlib.sha256).hexdigest()


def load_key(
    path: Path | None = None, environ: Mapping[str, str] | None = None
) -> SigningKey | None:
    """The key from `path`, else from the file named by RECO_BUNDLE_KEY_FILE, else from
    RECO_BUNDLE_KEY itself; None when none is configured. Raises SigningKeyError if unusable."""
    environ = os.environ if environ is None else environ
    inline = environ.get(KEY_ENV, "")
    if path is None and environ.get(KEY_FILE_ENV):
        path = Path(environ[KEY_FILE_ENV])
    if path is not None and inline:
        raise SigningKeyError(f"the key is given twice ({path} and {KEY_ENV}); keep one")
    if path is not None:
        try:
            text = path.read_bytes().strip()
        except OSError as exc:
            raise SigningKeyError(f"cannot read the key file {path}: {exc.strerror}") from None
        key = SigningKey(text, f"key file {path}")
    elif inline:
        key = SigningKey(inline.strip().encode(), KEY_ENV)
    else:
        return None
    if len(key.secret) < MIN_KEY_CHARS:
        raise SigningKeyError(
            f"the {key.source} holds {len(key.secret)} characters; a key needs at least "
            f"{MIN_KEY_CHARS} (python -m training keygen writes one)"
        )
    return key


def signing_key_for(path: Path | None, what: str) -> SigningKey | None:
    """The key a bundle writer (training, the compiler) signs with, or None with a warning that
    `what` stays unsigned. Raises SigningKeyError if a configured key is unusable."""
    key = load_key(path)
    if key is None:
        log.warning(
            "%s is not signed: no --bundle-key-file, %s or %s; a server with a key refuses it",
            what, KEY_FILE_ENV, KEY_ENV,
        )  # fmt: skip
    elif key.source.startswith("key file") and path is not None and not key_file_is_private(path):
        log.warning("%s is readable by other users; anyone who reads it can sign bundles", path)
    return key


def key_file_is_private(path: Path) -> bool:
    """Whether the key file is closed to other users: no access for others, no group write
    (group read is a deliberate share, e.g. root:reco 0440 in the container image)."""
    return not stat.S_IMODE(path.stat().st_mode) & 0o027


def generate_key_file(path: Path) -> SigningKey:
    """Writes a new random key (64 hex characters) readable by its owner only; never overwrites."""
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(secret + b"\n")
    return SigningKey(secret, f"key file {path}")
