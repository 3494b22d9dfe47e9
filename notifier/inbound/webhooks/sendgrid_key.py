"""SendGrid's verification key read from its setting: apart from the webhook module, so
config.py can check the setting at startup without importing the bounce processor."""

from __future__ import annotations

import base64
import binascii

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def public_key(text_or_pem: str) -> ec.EllipticCurvePublicKey:
    """The verification key as SendGrid shows it (base64 DER) or as PEM; ValueError if not
    an elliptic-curve public key."""
    value = text_or_pem.strip()
    try:
        if value.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(value.replace("\\n", "\n").encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode(value, validate=True))
    except (ValueError, binascii.Error, TypeError) as error:
        raise ValueError(f"is not a public key ({error})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("must be an elliptic-curve (ECDSA) public key")
    return key
