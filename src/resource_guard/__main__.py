"""``python -m resource_guard``: the ``resource-guard`` command."""

import sys

from resource_guard.cli import main

if __name__ == "__main__":  # pragma: no cover - run as a real process by tests/test_cli.py
    sys.exit(main())
