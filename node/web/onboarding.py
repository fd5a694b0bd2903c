"""Onboarding on a council node: the signup reward for a new account, behind a puzzle or a
one-time invite code and rate limits; and, optionally, endorsing uncontested handle claims.

Off by default. A council operator turns it on in the `[onboarding]` section of swarmd.toml
(validated like every section: node/config); `swarmd devnet` turns it on. An `onboarding.toml`
in the node's home, with the same keys, overrides the section while the node runs: it is read
again whenever it changes, so turning onboarding off takes effect at once without a restart.

The puzzle: a nonce such that sha256("swarmd/signup/v1\\0" || network id || account key ||
nonce as 8 bytes big-endian) starts with `pow_bits` zero bits. It is bound to the account, and
the ledger grants an account once only, so a solution can neither be reused nor sold on. An
invite code (web/invites.py) replaces the puzzle, or is required with `require_invite`. The
grant is an ordinary `grant` op signed with this node's key (a council member's), subject to the
genesis grant limits like one made with `swarmd wallet grant`.

`endorse_handles`: on each admitted claim whose handle is free in this node's final state and
has no other open claim, this council node signs an endorsement; a contested handle is left to
the council's arbitration (`swarmd council endorse|revoke`). Turning it on takes the config
section and a restart; onboarding.toml can turn it off while the node runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import tomllib
from collections import OrderedDict
from pathlib import Path
from typing import Any

from swarmd.protocol import crypto
from swarmd.protocol.node_core import Mode
from swarmd.protocol.ops import Kind, Op
from swarmd.protocol.wallet import Author

from ..config import ConfigError, OnboardingSection, config_from_mapping
from ..logs import get_logger
from ..runtime.driver import Daemon
from . import invites
from .errors import WebApiError

log = get_logger("swarmd.onboarding")

SETTINGS_FILE_NAME = "onboarding.toml"
SIGNUP_TAG = b"swarmd/signup/v1\x00"
#: Client addresses whose signup buckets are remembered (least recently seen forgotten first).
SIGNUP_CLIENTS_MAX = 10_000
#: Claims waiting for this node's endorsement at once; more are left to the operators.
ENDORSEMENTS_QUEUED_MAX = 1024
_SECONDS_PER_HOUR = 3600.0


def parse_settings(text: str, home: Path) -> OnboardingSection:
    """An onboarding.toml: the `[onboarding]` keys at top level, validated the same way."""
    section: OnboardingSection = config_from_mapping(
        {"onboarding": tomllib.loads(text)}, home
    ).onboarding
    return section


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
        self.home = daemon.config.node.home
        self.path: Path = self.home / SETTINGS_FILE_NAME
        self._cached: tuple[int, OnboardingSection] | None = None
        self._per_address = _Bucket()
        self._global = _Bucket()
        # The node's own ops (grants, endorsements) are consecutive ops of its chain: one at
        # a time.
        self._lock = asyncio.Lock()
        self._endorsing: set[asyncio.Task[None]] = set()
        self.council = daemon.keypair.public_key in daemon.genesis.council
        if self.council and daemon.config.onboarding.endorse_handles:
            daemon.add_listener(self._on_event)

    def settings(self) -> OnboardingSection:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return self.daemon.config.onboarding
        if self._cached is None or self._cached[0] != mtime:
            try:
                settings = parse_settings(self.path.read_text(), self.home)
            except (OSError, ValueError, ConfigError) as exc:
                raise WebApiError(503, "onboarding_misconfigured", f"{self.path}: {exc}") from None
            self._cached = (mtime, settings)
        return self._cached[1]

    def describe(self) -> dict[str, Any]:
        settings = self.settings()
        return {
            "enabled": settings.enabled and self.council,
            "pow_bits": settings.pow_bits,
            "require_invite": settings.require_invite,
            "signup_reward": self.daemon.genesis.signup_reward,
        }

    async def signup(
        self, account: bytes, nonce: int | None, client: str, invite: str | None = None
    ) -> dict[str, Any]:
        daemon = self.daemon
        settings = self.settings()
        if not settings.enabled:
            raise WebApiError(404, "onboarding_disabled", "this node does not run onboarding")
        if not self.council:
            raise WebApiError(503, "not_council", "only a council member's node can grant")
        now = time.monotonic()
        if not self._per_address.allow(client, settings.signups_per_address_per_hour, now):
            raise WebApiError(429, "signup_rate_limited", "too many signups from this address")
        if not self._global.allow("", settings.signups_per_hour, now):
            raise WebApiError(429, "signup_rate_limited", "this node's signup budget is spent")
        if invite is None:
            if settings.require_invite:
                raise WebApiError(403, "invite_required", "this node signs up by invite only")
            digest = puzzle_digest(daemon.genesis.network_id, account, nonce or 0)
            if nonce is None or leading_zero_bits(digest) < settings.pow_bits:
                raise WebApiError(400, "bad_proof_of_work", "the nonce does not solve the puzzle")
        if daemon.core.ledger.state.accounts.get(account) is not None:
            raise WebApiError(409, "already_signed_up", "this account already exists")
        self._check_writable()
        async with self._lock:
            # Checked before the grant, spent only once the ledger took it: a refused grant
            # (a mode, the member's grant cap) leaves the code usable. The lock keeps two
            # signups from spending one code. (A crash between the grant and the write leaves
            # the code unspent: one more grant at worst, within the member's cap.)
            invite_hash: str | None = None
            if invite is not None:
                try:
                    invite_hash = invites.check(settings.invite_codes_file, invite)
                except invites.InviteError as exc:
                    raise WebApiError(403, exc.code, str(exc)) from None
            granted = await self._grant(account)
            if invite_hash is not None:
                try:
                    invites.mark_used(settings.invite_codes_file, invite_hash)
                except OSError as exc:  # the grant stands; the operator learns the code lives
                    log.error(
                        "invite_not_spent", file=str(settings.invite_codes_file), error=str(exc)
                    )
            return granted

    def _check_writable(self) -> None:
        """A node that refuses client writes refuses grants as well: say so as POST /v1/ops
        does (503 with the mode's code and reason), before an invite code is spent on a grant
        that cannot happen."""
        core = self.daemon.core
        mode = core.effective_mode
        if mode is not Mode.NORMAL:
            code = "read_only" if mode is Mode.READ_ONLY else "quiesced"
            self._refuse_in_mode(code)

    def _refuse_in_mode(self, code: str) -> None:
        reason = self.daemon.core.mode_reason
        message = f"node is {code.replace('_', '-')}" + (f": {reason}" if reason else "")
        raise WebApiError(503, code, message, reason=reason)

    def _author(self) -> Author:
        daemon = self.daemon
        own = daemon.core.ledger.state.accounts.get(daemon.keypair.public_key)
        return Author(
            daemon.keypair,
            daemon.genesis.network_id,
            seq=own.seq if own else 0,
            head=own.head if own else b"",
        )

    async def _grant(self, account: bytes) -> dict[str, Any]:
        daemon = self.daemon
        op = self._author().sign(Kind.GRANT, to=account, amount=daemon.genesis.signup_reward)
        outcome = await daemon.submit(op.envelope)
        if outcome.status == "rejected" and outcome.code in ("read_only", "quiesced"):
            self._refuse_in_mode(outcome.code)
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

    # --- endorse_handles -----------------------------------------------------------------------

    async def idle(self) -> None:
        """Wait until every endorsement this node decided on was signed and submitted."""
        while self._endorsing:
            await asyncio.gather(*self._endorsing)

    def _on_event(self, event: dict[str, Any]) -> None:
        if event.get("type") != "op_accepted" or event.get("kind") != Kind.HANDLE_CLAIM.label:
            return
        try:
            if not self.settings().endorse_handles:
                return  # turned off by onboarding.toml while running
        except WebApiError:
            return  # a malformed onboarding.toml turns everything away until fixed
        if len(self._endorsing) >= ENDORSEMENTS_QUEUED_MAX:
            return
        task = asyncio.ensure_future(self._endorse(bytes.fromhex(event["op_id"])))
        self._endorsing.add(task)
        task.add_done_callback(self._endorsing.discard)

    def uncontested(self, claim_id: bytes) -> Op | None:
        """The claim, when its handle is free in the final state, nobody else claims it and
        this node has not endorsed it yet; None otherwise."""
        ledger = self.daemon.core.ledger
        op = ledger.op(claim_id)
        if op is None or op.kind is not Kind.HANDLE_CLAIM:
            return None
        handle = op.fields["handle"]
        if handle in ledger.final_state.bindings:
            return None
        claims = [cid for cid, claim in ledger.state.claims.items() if claim.handle == handle]
        claim = ledger.state.claims.get(claim_id)
        if claims != [claim_id] or claim is None:
            return None
        if self.daemon.keypair.public_key in claim.endorsers:
            return None
        return op

    async def _endorse(self, claim_id: bytes) -> None:
        async with self._lock:
            claim = self.uncontested(claim_id)
            if claim is None:
                return
            op = self._author().sign(Kind.HANDLE_ENDORSE, claim=claim_id, deps=[claim_id])
            with contextlib.suppress(Exception):
                outcome = await self.daemon.submit(op.envelope)
                log.info(
                    "handle_endorsed",
                    handle=claim.fields["handle"],
                    claim=claim_id.hex(),
                    status=outcome.status,
                    code=outcome.code,
                )
