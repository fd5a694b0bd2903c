"""Genesis: the network's founding document; its hash is the network id.

The file is JSON for people to read (keys in their account-id text form). Its identity is the
sha256 of the canonical msgpack encoding of the parsed value, so whitespace or key order in the
JSON file does not change the network id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from . import crypto, encoding, limits
from .errors import GenesisError, InvalidAccountIdError

GENESIS_VERSION = 1
NETWORK_NAME_SIZE_BYTES_MAX = 64
GENESIS_FILE_SIZE_BYTES_MAX = 64 * 1024


@dataclass(frozen=True)
class Genesis:
    network_name: str
    council: tuple[bytes, ...]  # sorted public keys of the council (validators)
    signup_reward: int
    grants_per_member_per_window: int
    created_at: int  # unix seconds, supplied by whoever writes the file (not read from a clock)
    version: int = GENESIS_VERSION

    def __post_init__(self) -> None:
        if self.version != GENESIS_VERSION:
            raise GenesisError(f"unsupported genesis version {self.version}")
        name_size = len(self.network_name.encode())
        if not self.network_name or name_size > NETWORK_NAME_SIZE_BYTES_MAX:
            raise GenesisError(f"network_name must be 1-{NETWORK_NAME_SIZE_BYTES_MAX} bytes")
        if not 1 <= len(self.council) <= limits.COUNCIL_SIZE_MAX:
            raise GenesisError(f"council must have 1-{limits.COUNCIL_SIZE_MAX} members")
        if list(self.council) != sorted(set(self.council)):
            raise GenesisError("council keys must be sorted and distinct")
        for key in self.council:
            try:
                crypto.check_public_key(key)
            except Exception as exc:
                raise GenesisError(f"council key is invalid: {exc}") from exc
        if not 1 <= self.signup_reward <= limits.AMOUNT_MAX:
            raise GenesisError("signup_reward must be a positive int")
        if not 1 <= self.grants_per_member_per_window <= 10**9:
            raise GenesisError("grants_per_member_per_window must be a positive int")
        if self.created_at < 0:
            raise GenesisError("created_at must be non-negative")

    @classmethod
    def create(
        cls,
        network_name: str,
        council: list[bytes],
        *,
        signup_reward: int = 100,
        grants_per_member_per_window: int = limits.GRANTS_PER_MEMBER_PER_WINDOW_DEFAULT,
        created_at: int = 0,
    ) -> Genesis:
        return cls(
            network_name=network_name,
            council=tuple(sorted(set(council))),
            signup_reward=signup_reward,
            grants_per_member_per_window=grants_per_member_per_window,
            created_at=created_at,
        )

    @property
    def fault_tolerance(self) -> int:
        """f = floor((n - 1) / 3): how many council members may be faulty."""
        return (len(self.council) - 1) // 3

    @property
    def quorum(self) -> int:
        """The smallest number of members that is more than two thirds of the council."""
        return len(self.council) * 2 // 3 + 1

    def to_value(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "network_name": self.network_name,
            "council": list(self.council),
            "signup_reward": self.signup_reward,
            "grants_per_member_per_window": self.grants_per_member_per_window,
            "created_at": self.created_at,
        }

    @property
    def network_id(self) -> bytes:
        return crypto.sha256(b"swarmd/genesis/v1\x00" + encoding.encode(self.to_value()))

    def to_json(self) -> str:
        value = self.to_value()
        value["council"] = [crypto.account_id_text(key) for key in self.council]
        return json.dumps(value, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> Genesis:
        if len(text) > GENESIS_FILE_SIZE_BYTES_MAX:
            raise GenesisError(f"genesis file exceeds {GENESIS_FILE_SIZE_BYTES_MAX} bytes")
        try:
            value = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise GenesisError(f"genesis is not valid JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise GenesisError("genesis must be a JSON object")
        expected = {
            "version",
            "network_name",
            "council",
            "signup_reward",
            "grants_per_member_per_window",
            "created_at",
        }
        if set(value) != expected:
            raise GenesisError(f"genesis must have exactly the keys {sorted(expected)}")
        council = value["council"]
        if not isinstance(council, list) or not all(isinstance(item, str) for item in council):
            raise GenesisError("council must be a list of account ids")
        try:
            keys = [crypto.parse_account_id(item) for item in council]
        except InvalidAccountIdError as exc:
            raise GenesisError(f"council member: {exc}") from exc
        for name in ("version", "signup_reward", "grants_per_member_per_window", "created_at"):
            if not isinstance(value[name], int) or isinstance(value[name], bool):
                raise GenesisError(f"{name} must be an integer")
        if not isinstance(value["network_name"], str):
            raise GenesisError("network_name must be a string")
        if keys != sorted(set(keys)):
            raise GenesisError("council keys must be distinct and sorted by key bytes")
        return cls(
            network_name=value["network_name"],
            council=tuple(keys),
            signup_reward=value["signup_reward"],
            grants_per_member_per_window=value["grants_per_member_per_window"],
            created_at=value["created_at"],
            version=value["version"],
        )
