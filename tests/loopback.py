"""Real servers for tests: an ASGI app under uvicorn on 127.0.0.1, and the example apps."""

from __future__ import annotations

import importlib.util
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import uvicorn

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
STARTUP_TIMEOUT = 10.0


def load_example(name: str) -> ModuleType:
    """A fresh module object of ``examples/<name>.py`` (never registered in sys.modules)."""
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class LoopbackServer:
    """uvicorn serving ``app`` on 127.0.0.1 (an ephemeral port) in a thread of its own,
    lifespan included; entering gives the base URL, leaving stops it (bounded waits)."""

    def __init__(self, app: Any, *, log_level: str = "warning") -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="on", log_level=log_level)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=STARTUP_TIMEOUT)
        assert not self.thread.is_alive(), "uvicorn did not stop"
