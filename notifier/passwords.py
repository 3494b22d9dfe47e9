"""Editor password hashes: Argon2id at OWASP's recommended cost (19 MiB, 2 passes, 1 lane).

Hashes made before (werkzeug's scrypt) still verify, and are replaced by an Argon2id hash at
the editor's next successful login, as are hashes of a lower cost once the cost is raised.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from werkzeug.security import check_password_hash

ARGON2 = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)


def hash_password(password: str) -> str:
    return ARGON2.hash(password)


def verify_password(stored: str, password: str) -> bool:
    if not stored.startswith("$argon2"):
        return check_password_hash(stored, password)  # a hash from before Argon2id
    try:
        return ARGON2.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    return not stored.startswith("$argon2") or ARGON2.check_needs_rehash(stored)
