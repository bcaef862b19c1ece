"""``python -m resource_guard``: the ``resource-guard`` command."""

import sys

from resource_guard.cli import main

if __name__ == "__main__":  # pragma: no cover - tests/cli/test_processes.py runs it
    sys.exit(main())
