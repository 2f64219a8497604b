"""Payload encryption: every payload the project hands Temporal is compressed, then sealed with AES-256-GCM.

Workflow inputs, results, signals, memos and (through the failure converter) error messages carry
customers' names, e-mails, phones and documents. Temporal stores them for the namespace's retention, so
they are encrypted before they leave the process: the Temporal service, its database and its UI see only
ciphertext, and the key never leaves the hub's processes (and the codec server that decodes for support).

A payload's metadata names the key that sealed it, so keys rotate without breaking old histories: the
active key encrypts, every key of the ring decrypts.
"""

from __future__ import annotations

import base64
import os
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # GCM's standard nonce; random per payload
TAG_BYTES = 16  # GCM's authentication tag, at the end of the sealed data

# The payload key local runs and tests use when HUB_PAYLOAD_KEYS is empty. It is public (it is right
# here), so production refuses it.
LOCAL_PAYLOAD_KEY_ID = "local-dev"
LOCAL_PAYLOAD_KEY = base64.b64encode(b"local-dev-only-payload-key-0001!").decode()


class PayloadKeyError(ValueError):
    """A payload cannot be decrypted with this key ring (unknown key id, or not sealed by that key)."""


def decode_key(key_id: str, text: str) -> bytes:
    """The 32 raw bytes of a base64 key, or ValueError naming the key id (never the key).

    Raises:
        ValueError: the text is not base64 of exactly 32 bytes.
    """
    try:
        key = base64.b64decode(text, validate=True)
    except ValueError:
        raise ValueError(f"payload key {key_id!r} is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"payload key {key_id!r} must be {KEY_BYTES} bytes (AES-256), got {len(key)}")
    return key


@dataclass(frozen=True)
class KeyRing:
    """The keys that decrypt (by id), and the one that encrypts."""

    keys: Mapping[str, bytes]
    active: str

    def __post_init__(self) -> None:
        if self.active not in self.keys:
            raise ValueError(f"active payload key {self.active!r} is not in the key ring")

    @classmethod
    def from_text(cls, keys: Mapping[str, str], active: str) -> KeyRing:
        """A ring from base64 keys by id, as the settings hold them."""
        return cls({key_id: decode_key(key_id, text) for key_id, text in keys.items()}, active)


class EncryptionCodec(PayloadCodec):
    """Compresses then encrypts each payload with the ring's active key; decrypts with the key it names.

    Payloads without the encrypted encoding pass through decoding unchanged: histories written before
    encryption was turned on (and still running workflows) keep replaying. With ``encrypt=False`` (local
    measurements only; production refuses it) new payloads are written plain and old ones still decrypt.
    """

    def __init__(self, ring: KeyRing, *, encrypt: bool = True) -> None:
        self._ring = ring
        self._encrypt = encrypt
        self._ciphers = {key_id: AESGCM(key) for key_id, key in ring.keys.items()}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        if not self._encrypt:
            return list(payloads)
        return [self.seal(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.unseal(payload) for payload in payloads]

    def seal(self, payload: Payload) -> Payload:
        key_id = self._ring.active
        nonce = os.urandom(NONCE_BYTES)
        # Compress first: ciphertext does not compress. The key id is authenticated with the data, so a
        # payload relabelled with another id fails instead of decrypting under a key it was not meant for.
        plain = zlib.compress(payload.SerializeToString())
        sealed = self._ciphers[key_id].encrypt(nonce, plain, key_id.encode())
        return Payload(metadata={"encoding": ENCODING, KEY_ID: key_id.encode()}, data=nonce + sealed)

    def unseal(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            known = ", ".join(sorted(self._ciphers))
            raise PayloadKeyError(
                f"payload encrypted with key id {key_id!r}, which is not in the key ring ({known});"
                " add that key to HUB_PAYLOAD_KEYS"
            )
        if len(payload.data) < NONCE_BYTES + TAG_BYTES:  # the cipher would refuse the nonce: a plain 500
            raise PayloadKeyError(f"payload marked with key id {key_id!r} is too short to be sealed data")
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            plain = cipher.decrypt(nonce, sealed, key_id.encode())
        except InvalidTag:
            raise PayloadKeyError(
                f"payload marked with key id {key_id!r} does not decrypt with that key"
                " (altered, or a different key under the same id)"
            ) from None
        return Payload.FromString(zlib.decompress(plain))
