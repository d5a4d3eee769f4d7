"""``ferrocorn`` and ``python -m ferrocorn``: the Gunicorn-compatible command line."""

from __future__ import annotations

import sys


def main() -> None:
    from ferrocorn._ferrocorn import run

    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
