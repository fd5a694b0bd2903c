"""The `swarmd` command line. Every command takes `--json` for scripts.

Each command group lives in its own module with a `register(add)`; this module builds the
parser from them and maps errors to exit codes (README, docs/OPERATIONS.md):

  0  success
  1  a runtime refusal or failure: the node is unreachable, refused the op (its stable code
     is printed), the database is locked or corrupt, the port is in use, a check failed
  2  usage: bad arguments, or a config file that does not validate (restarting cannot fix it)

An error prints one line `swarmd: error: <message> [<code>]` on stderr (or, with --json, one
JSON object with `error` and `code` on stdout); nothing prints a traceback for bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys

from swarmd.protocol.errors import ProtocolError

from ..config import ConfigError
from . import (
    admin,
    chaos,
    council,
    devnet,
    home,
    keys,
    offline,
    recovery,
    release,
    rollback,
    snapshots,
    status,
    telemetry,
    version,
    wallet,
)
from .common import EXIT_FAILED, EXIT_USAGE, CliError, Handler, Output, Parser, shown

#: The command groups, in the order `swarmd --help` lists them.
COMMAND_GROUPS = (
    keys,
    offline,
    chaos,
    recovery,
    rollback,
    snapshots,
    home,
    status,
    telemetry,
    wallet,
    admin,
    council,
    devnet,
    release,
    version,
)


EXIT_CODES_HELP = """exit codes:
  0  success
  1  a runtime refusal or failure (the stable code is printed: node_unreachable,
     insufficient_funds, read_only, database_locked, address_in_use, ...)
  2  usage: bad arguments, or a config file that does not validate"""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="swarmd",
        description="Swarm Credits validator daemon",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--version", action="version", version=version.version_text())
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    def add(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.add_argument("--json", action="store_true", help="print one JSON object")
        command.set_defaults(handler=handler)
        return command

    for group in COMMAND_GROUPS:
        group.register(add)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv
    out = Output(as_json)
    try:
        args = build_parser().parse_args(argv)
        handler: Handler = args.handler
        return handler(args, Output(as_json or args.json))
    except CliError as exc:
        return _fail(out, str(exc), exc.code, EXIT_USAGE if exc.usage else EXIT_FAILED)
    except ConfigError as exc:
        return _fail(out, exc.message, exc.code, EXIT_USAGE)
    except ProtocolError as exc:
        return _fail(out, exc.message, exc.code, EXIT_USAGE if exc.code == "usage" else EXIT_FAILED)
    except sqlite3.Error as exc:
        # The store types what it checks (corrupt_database, database_locked, ...); a damaged
        # schema it did not check (a table gone) still gets one line, not a traceback.
        message = f"the database could not be used: {exc} (swarmd recover restores a node)"
        return _fail(out, message, "storage_error", EXIT_FAILED)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`swarmd ... | head`): not an error of ours. Point stdout at
        # /dev/null so the interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


def _fail(out: Output, message: str, code: str, status: int) -> int:
    if out.as_json:
        print(json.dumps({"error": message, "code": code}))
    else:
        # One line, whatever the message holds: SQLite's quick_check report spans lines, and a
        # path or a node's answer may carry newlines or control characters.
        print(f"swarmd: error: {shown(message)} [{code}]", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
