"""`swarmd keygen` and `swarmd genesis`: keys and the genesis file of a network."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from swarmd.protocol import crypto
from swarmd.protocol.genesis import Genesis

from .common import (
    EXIT_OK,
    Add,
    CliError,
    Output,
    key_file_text,
    load_key_file,
    positive_int,
    write_private_file,
)


def cmd_keygen(args: argparse.Namespace, out: Output) -> int:
    keypair = crypto.KeyPair.from_seed(os.urandom(32))
    if args.out:
        path = Path(args.out)
        if path.exists() and not args.force:
            raise CliError(f"{path} exists; pass --force to overwrite", "file_exists")
        write_private_file(path, key_file_text(keypair))
    value = {"account_id": keypair.account_id, "key_file": args.out}
    if not args.out:
        value["seed"] = keypair.seed.hex()
    out.result(value, keypair.account_id)
    return EXIT_OK


def cmd_genesis(args: argparse.Namespace, out: Output) -> int:
    council: list[bytes] = []
    for item in args.council:
        path = Path(item)
        if path.exists():
            council.append(load_key_file(path).public_key)
        else:
            council.append(crypto.parse_account_id(item))
    if not council:
        raise CliError("at least one --council member is required", "council_empty")
    genesis = Genesis.create(
        args.name,
        council,
        signup_reward=args.signup_reward,
        grants_per_member_per_window=args.grant_cap,
        created_at=args.created_at,
    )
    text = genesis.to_json()
    if args.out:
        Path(args.out).write_text(text)
    value = {"network_id": genesis.network_id.hex(), "genesis_file": args.out}
    out.result(value, text if not args.out else genesis.network_id.hex())
    return EXIT_OK


def register(add: Add) -> None:
    keygen = add("keygen", cmd_keygen, "create an Ed25519 key (account)")
    keygen.add_argument("--out", help="write the key file here (mode 0600)")
    keygen.add_argument("--force", action="store_true")

    genesis = add("genesis", cmd_genesis, "write a genesis file for a council")
    genesis.add_argument("--name", required=True, help="network name")
    genesis.add_argument(
        "--council", action="append", default=[], help="member account id or key file"
    )
    genesis.add_argument("--signup-reward", type=positive_int, default=100)
    genesis.add_argument("--grant-cap", type=positive_int, default=1000)
    genesis.add_argument("--created-at", type=int, default=0, help="unix seconds")
    genesis.add_argument("--out", help="write the genesis file here")
