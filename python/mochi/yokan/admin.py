"""``yokan-server snapshot``: admin calls to a running provider.

    yokan-server snapshot ADDRESS PROVIDER_ID DEST [--timeout SECONDS]
                          [--engine-config JSON]

asks the provider ``PROVIDER_ID`` at ``ADDRESS`` to snapshot its database into
``DEST`` on the provider's own file system. The provider allows it only when
its config sets ``"snapshot_dir"`` and ``DEST`` resolves inside it (a relative
``DEST`` is taken relative to it); see docs/snapshot.rst. Exit code 0 on
success, 1 with the provider's error on standard error otherwise, 2 for bad
arguments.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence


def snapshot_main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs ``yokan-server snapshot ...`` (``argv`` without the word
    ``snapshot``); returns the exit code. Raises nothing."""
    parser = argparse.ArgumentParser(
        prog="yokan-server snapshot",
        description="Ask a running provider to snapshot its database (on its own file system).",
    )
    parser.add_argument("address", help="the provider's address, e.g. tcp://10.0.0.5:7000")
    parser.add_argument("provider_id", type=int, help="the provider's id")
    parser.add_argument("dest", help="destination directory, inside the provider's snapshot_dir")
    parser.add_argument(
        "--timeout", type=float, default=0.0, help="give up after this many seconds (0: never)"
    )
    parser.add_argument(
        "--engine-config",
        default="",
        help='this client engine\'s JSON config, e.g. \'{"auth": {"token_file": "F"}}\'',
    )
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    if not 0 <= args.provider_id <= 0xFFFF:
        print("yokan-server snapshot: PROVIDER_ID must be in [0, 65535]", file=sys.stderr)
        return 2

    from mochi.margo import Engine, client
    from mochi.yokan import _server
    from mochi.yokan.exception import Exception as YokanError
    from mochi.yokan.server import _native_engine

    protocol = args.address.split("://", 1)[0] if "://" in args.address else "tcp"
    try:
        with Engine(protocol, mode=client, config=args.engine_config) as engine:
            _server.remote_snapshot(
                _native_engine(engine),
                args.address,
                args.provider_id,
                args.dest,
                args.timeout * 1000.0,
            )
    except YokanError as e:
        print(f"yokan-server snapshot: {e} (code {e.code})", file=sys.stderr)
        return 1
    except (RuntimeError, ValueError, TypeError) as e:  # engine config, address
        print(f"yokan-server snapshot: {e}", file=sys.stderr)
        return 1
    print(f"snapshot of provider {args.provider_id} at {args.address} written to {args.dest}")
    return 0
