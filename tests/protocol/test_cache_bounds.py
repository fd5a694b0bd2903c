"""VALID_KEY_CACHE_ENTRIES_MAX reached: the memoized key checks and account-id texts hold at
most that many entries however many distinct keys pass through."""

from __future__ import annotations

import hashlib

import pytest

from swarmd.protocol import crypto
from swarmd.protocol.limits import VALID_KEY_CACHE_ENTRIES_MAX


@pytest.mark.slow  # 65k point checks (about 2 s on an idle machine)
def test_the_key_caches_stay_within_valid_key_cache_entries_max() -> None:
    keys = [
        hashlib.sha256(i.to_bytes(4, "big")).digest()
        for i in range(VALID_KEY_CACHE_ENTRIES_MAX + 10)
    ]
    for cached in (crypto.is_valid_public_key, crypto.account_id_text):
        for key in keys:
            cached(key)
        info = cached.cache_info()  # type: ignore[attr-defined]
        assert info.maxsize == VALID_KEY_CACHE_ENTRIES_MAX
        assert info.currsize == VALID_KEY_CACHE_ENTRIES_MAX
    # The first keys were evicted: checking one again is a miss, and still right.
    misses = crypto.is_valid_public_key.cache_info().misses  # type: ignore[attr-defined]
    assert crypto.is_valid_public_key(keys[0]) is crypto.is_valid_public_key(keys[0])
    assert crypto.is_valid_public_key.cache_info().misses == misses + 1  # type: ignore[attr-defined]
