"""Onboarding on a council node: the signup reward for a new account, behind a puzzle and limits.

Off by default. A council operator turns it on with `onboarding.toml` in the node's home:

    enabled = true
    pow_bits = 16                        # work per signup: 2**pow_bits hashes on average
    signups_per_address_per_hour = 5     # per client IP address
    signups_per_hour = 600               # for this node as a whole

The file is read again whenever it changes, so turning onboarding off takes effect at once
without a restart. (It is a file of its own because [onboarding] is not yet a section of the
validated node config; it should move there.)

The puzzle: a nonce such that sha256("swarmd/signup/v1\\0" || network id || account key ||
nonce as 8 bytes big-endian) starts with `pow_bits` zero bits. It is bound to the account, and
the ledger grants an account once only, so a solution can neither be reused nor sold on. The
grant is an ordinary `grant` op signed with this node's key (a council member's), subject to the
genesis grant limits like one made with `swarmd wallet grant`.
"""

from __future__ import annotations

import asyncio
import time
import tomllib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarmd.protocol import crypto
from swarmd.protocol.ops import Kind
from swarmd.protocol.wallet import Author

from ..runtime.driver import Daemon
from .errors import WebApiError

SETTINGS_FILE_NAME = "onboarding.toml"
SIGNUP_TAG = b"swarmd/signup/v1\x00"
#: Largest puzzle cost accepted from the settings file (2**32 hashes is hours in a browser).
POW_BITS_MAX = 32
#: Client addresses whose signup buckets are remembered (least recently seen forgotten first).
SIGNUP_CLIENTS_MAX = 10_000
_SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class OnboardingSettings:
    enabled: bool = False
    pow_bits: int = 16
    signups_per_address_per_hour: int = 5
    signups_per_hour: int = 600

    @classmethod
    def parse(cls, text: str) -> OnboardingSettings:
        value = tomllib.loads(text)
        unknown = set(value) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}")
        settings = cls(**value)
        if type(settings.enabled) is not bool:
            raise ValueError("enabled must be true or false")
        for name, low, high in (
            ("pow_bits", 0, POW_BITS_MAX),
            ("signups_per_address_per_hour", 1, 1_000_000),
            ("signups_per_hour", 1, 1_000_000),
        ):
            number = getattr(settings, name)
            if type(number) is not int or not low <= number <= high:
                raise ValueError(f"{name} must be an integer {low}..{high}")
        return settings


class _Bucket:
    """Token buckets refilled per hour, one per key, bounded in the number of keys."""

    def __init__(self) -> None:
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, key: str, per_hour: int, now: float) -> bool:
        tokens, at = self._buckets.pop(key, (float(per_hour), now))
        tokens = min(float(per_hour), tokens + (now - at) * per_hour / _SECONDS_PER_HOUR)
        allowed = tokens >= 1
        self._buckets[key] = (tokens - 1 if allowed else tokens, now)
        while len(self._buckets) > SIGNUP_CLIENTS_MAX:
            self._buckets.popitem(last=False)
        return allowed


def puzzle_digest(network_id: bytes, account: bytes, nonce: int) -> bytes:
    return crypto.sha256(SIGNUP_TAG + network_id + account + nonce.to_bytes(8, "big"))


def leading_zero_bits(digest: bytes) -> int:
    value = int.from_bytes(digest, "big")
    return len(digest) * 8 - value.bit_length()


class Onboarding:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.path: Path = daemon.config.node.home / SETTINGS_FILE_NAME
        self._cached: tuple[int, OnboardingSettings] | None = None
        self._per_address = _Bucket()
        self._global = _Bucket()
        # Grants are consecutive ops of this node's chain: one at a time.
        self._lock = asyncio.Lock()

    def settings(self) -> OnboardingSettings:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return OnboardingSettings()
        if self._cached is None or self._cached[0] != mtime:
            try:
                settings = OnboardingSettings.parse(self.path.read_text())
            except (OSError, ValueError, TypeError) as exc:
                raise WebApiError(503, "onboarding_misconfigured", f"{self.path}: {exc}") from None
            self._cached = (mtime, settings)
        return self._cached[1]

    def describe(self) -> dict[str, Any]:
        settings = self.settings()
        council = self.daemon.keypair.public_key in self.daemon.genesis.council
        return {
            "enabled": settings.enabled and council,
            "pow_bits": settings.pow_bits,
            "signup_reward": self.daemon.genesis.signup_reward,
        }

    async def signup(self, account: bytes, nonce: int, client: str) -> dict[str, Any]:
        daemon = self.daemon
        settings = self.settings()
        if not settings.enabled:
            raise WebApiError(404, "onboarding_disabled", "this node does not run onboarding")
        if daemon.keypair.public_key not in daemon.genesis.council:
            raise WebApiError(503, "not_council", "only a council member's node can grant")
        now = time.monotonic()
        if not self._per_address.allow(client, settings.signups_per_address_per_hour, now):
            raise WebApiError(429, "signup_rate_limited", "too many signups from this address")
        if not self._global.allow("", settings.signups_per_hour, now):
            raise WebApiError(429, "signup_rate_limited", "this node's signup budget is spent")
        digest = puzzle_digest(daemon.genesis.network_id, account, nonce)
        if leading_zero_bits(digest) < settings.pow_bits:
            raise WebApiError(400, "bad_proof_of_work", "the nonce does not solve the puzzle")
        if daemon.core.ledger.state.accounts.get(account) is not None:
            raise WebApiError(409, "already_signed_up", "this account already exists")
        async with self._lock:
            return await self._grant(account)

    async def _grant(self, account: bytes) -> dict[str, Any]:
        daemon = self.daemon
        own = daemon.core.ledger.state.accounts.get(daemon.keypair.public_key)
        author = Author(
            daemon.keypair,
            daemon.genesis.network_id,
            seq=own.seq if own else 0,
            head=own.head if own else b"",
        )
        op = author.sign(Kind.GRANT, to=account, amount=daemon.genesis.signup_reward)
        outcome = await daemon.submit(op.envelope)
        if outcome.status == "rejected":
            raise WebApiError(
                409, outcome.code or "grant_rejected", outcome.detail or "the grant was refused"
            )
        return {
            "op_id": op.op_id.hex(),
            "status": outcome.status,
            "account": crypto.account_id_text(account),
            "amount": daemon.genesis.signup_reward,
        }
