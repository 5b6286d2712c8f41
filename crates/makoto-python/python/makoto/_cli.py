"""The ``makoto`` command installed by the wheel: the same CLI as the Rust binary, run in-process."""

from __future__ import annotations

import signal
import sys

from makoto import _native


def main() -> None:
    """Run ``makoto`` with this process's arguments and exit with its status (0, 1 or 2)."""
    # Ctrl-C ends the command as it ends the native binary, instead of waiting for Python's
    # handler to run between bytecodes (it would not, inside the extension).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.stdout.flush()
    sys.exit(_native.run_cli(["makoto", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
