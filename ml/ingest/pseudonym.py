"""Keyed pseudonyms (HMAC-SHA256) for personal identifiers: device and vehicle ids.

The key comes from the environment (``SIG2GPS_PSEUDONYM_KEY``), is never written anywhere and
never appears in messages. The same key and namespace always give the same pseudonym, so tables
imported separately still join; another key gives unrelated pseudonyms.
"""

from __future__ import annotations

import hashlib
import hmac
import os

import numpy as np
import pandas as pd

KEY_ENV_VAR = "SIG2GPS_PSEUDONYM_KEY"
MIN_KEY_BYTES = 16
PSEUDONYM_HEX_CHARS = 20  # 80 bits: collision odds about 1e-12 for a million ids
# pandas >= 3 has a real string dtype keeping nulls as NaN; older pandas would turn None into "None".
_STR_DTYPE: str | type = "str" if int(pd.__version__.split(".")[0]) >= 3 else object


class PseudonymKeyError(RuntimeError):
    """The pseudonymisation key is missing or too short (its value is never shown)."""


def key_from_env(var: str = KEY_ENV_VAR) -> bytes:
    """The HMAC key from environment variable ``var`` (UTF-8 bytes, at least 16 bytes)."""
    value = os.environ.get(var)
    if not value:
        raise PseudonymKeyError(
            f"environment variable {var} is not set: importing signaling/GPS needs a secret key to "
            f"pseudonymise device and vehicle ids (e.g. export {var}=$(python -c 'import secrets; "
            f"print(secrets.token_hex(32))')); keep it out of the repository"
        )
    key = value.encode("utf-8")
    if len(key) < MIN_KEY_BYTES:
        raise PseudonymKeyError(f"environment variable {var} is too short: use at least {MIN_KEY_BYTES} bytes")
    return key


def pseudonymise(ids: pd.Series, key: bytes, namespace: str = "") -> pd.Series:
    """Replace each id by ``hex(HMAC-SHA256(key, namespace NUL str(id)))[:20]``; nulls stay null.

    One HMAC per *unique* id (``pd.factorize``), then a vectorised take, so millions of rows with
    thousands of ids cost milliseconds. Ids are compared as text (``42`` and ``"42"`` agree).
    ``namespace`` separates kinds of ids (``"device"``, ``"vehicle"``) so equal raw strings of two
    kinds do not reveal a link. Returns a ``str`` Series with the input's index and name.
    """
    if not isinstance(key, (bytes, bytearray)) or len(key) == 0:
        raise PseudonymKeyError("pseudonymise: key must be non-empty bytes")
    codes, uniques = pd.factorize(ids, use_na_sentinel=True)
    prefix = namespace.encode("utf-8") + b"\x00"
    digest = np.array(
        [hmac.new(key, prefix + str(u).encode("utf-8"), hashlib.sha256).hexdigest()[:PSEUDONYM_HEX_CHARS]
         for u in uniques],
        dtype=object,
    )
    out = np.empty(len(codes), dtype=object)
    present = codes >= 0
    out[present] = digest[codes[present]] if len(digest) else []
    out[~present] = None
    return pd.Series(out, index=ids.index, name=ids.name).astype(_STR_DTYPE)
