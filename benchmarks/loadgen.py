"""Load generators: wrk (Debian's package) when installed, else a bounded asyncio client.

Both send ``GET path`` over keep-alive connections to 127.0.0.1 for a fixed time, cycling
through a list of bearer tokens (none: no Authorization header), and report requests,
errors (any status but 200, or a broken connection), p50 and p99 latency. The asyncio
client runs in its own process (``python -m benchmarks.loadgen SPEC.json``), pinned to the
core the servers do not use; it can also pace itself to a fixed rate and send other
methods with a body (wrk here does neither).
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks._common import CLIENT_CPU, ROOT, pinned
from benchmarks._stats import percentile

_WRK_SCRIPT = """
local tokens = {}
for line in io.lines("%(tokens)s") do tokens[#tokens + 1] = line end
local i = 0
request = function()
  if #tokens == 0 then return wrk.format("GET", "%(path)s") end
  i = i + 1
  local headers = {["Authorization"] = "Bearer " .. tokens[(i %% #tokens) + 1]}
  return wrk.format("GET", "%(path)s", headers)
end
done = function(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.status + e.timeout
  io.write(string.format("RESULT %%d %%d %%d %%.1f %%.1f\\n", summary.requests, errors,
    summary.duration, latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class Load:
    """What one load run sends."""

    port: int
    path: str = "/orders"
    tokens: tuple[str, ...] = ()
    connections: int = 1
    duration: float = 1.0
    rate: float = 0.0
    """Requests per second in all (asyncio client only); 0 sends as fast as it can."""
    method: str = "GET"
    """Anything but GET, or a body, needs the asyncio client."""
    body: str = ""
    """The request body, one character per byte (latin-1), sent with ``content_type``."""
    content_type: str = "application/x-www-form-urlencoded"

    @property
    def plain_get(self) -> bool:
        """A GET without a body: what wrk sends too."""
        return self.method == "GET" and not self.body


@dataclass(frozen=True)
class LoadResult:
    """What one load run measured (latencies in microseconds)."""

    requests: int
    errors: int
    seconds: float
    p50_us: float
    p99_us: float

    @property
    def rps(self) -> float:
        """Completed requests per second."""
        return self.requests / self.seconds if self.seconds else math.nan


def wrk_available() -> bool:
    """True when the wrk binary is on PATH."""
    return shutil.which("wrk") is not None


def run_wrk(load: Load) -> LoadResult:
    """One wrk run (one thread, ``connections`` connections), pinned to the client core."""
    if not load.plain_get:
        raise ValueError("wrk runs only send GET requests without a body")
    with tempfile.TemporaryDirectory() as folder:
        tokens = Path(folder, "tokens.txt")
        tokens.write_text("".join(f"{token}\n" for token in load.tokens))
        script = Path(folder, "load.lua")
        script.write_text(_WRK_SCRIPT % {"tokens": tokens, "path": load.path})
        seconds = max(1, round(load.duration))
        command = ["wrk", "-t1", f"-c{load.connections}", f"-d{seconds}s", "-s", str(script)]
        output = subprocess.run(
            [*pinned(command, CLIENT_CPU), f"http://127.0.0.1:{load.port}"],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=True,
        ).stdout
    for line in output.splitlines():
        if line.startswith("RESULT "):
            requests, errors, micros, p50, p99 = line.split()[1:]
            return LoadResult(int(requests), int(errors), int(micros) / 1e6, float(p50), float(p99))
    raise RuntimeError(f"wrk printed no result:\n{output[-1000:]}")


async def _worker(
    load: Load, requests: Sequence[bytes], offset: int, deadline: float, latencies: list[float]
) -> int:
    """One keep-alive connection; returns its error count."""
    reader, writer = await asyncio.open_connection("127.0.0.1", load.port)
    errors = 0
    index = offset
    interval = load.connections / load.rate if load.rate else 0.0
    next_send = time.perf_counter()
    try:
        while (now := time.perf_counter()) < deadline:
            if interval:
                if now < next_send:
                    await asyncio.sleep(next_send - now)
                next_send += interval
            start = time.perf_counter()
            writer.write(requests[index % len(requests)])
            index += load.connections  # the connections share the tokens out
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            if head[9:12] != b"200":
                errors += 1
    except (OSError, asyncio.IncompleteReadError, ValueError):
        errors += 1
    finally:
        writer.close()
    return errors


async def _run_client(load: Load) -> LoadResult:
    headers = [f"Authorization: Bearer {token}\r\n" for token in load.tokens] or [""]
    if load.body or load.method != "GET":
        length = len(load.body.encode("latin-1"))
        content = f"Content-Type: {load.content_type}\r\nContent-Length: {length}\r\n"
        headers = [header + content for header in headers]
    requests = [
        f"{load.method} {load.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{header}\r\n{load.body}".encode(
            "latin-1"
        )
        for header in headers
    ]
    latencies: list[float] = []
    start = time.perf_counter()
    deadline = start + load.duration
    errors = await asyncio.gather(
        *(
            _worker(load, requests, offset, deadline, latencies)
            for offset in range(load.connections)
        )
    )
    seconds = time.perf_counter() - start
    return LoadResult(
        requests=len(latencies),
        errors=sum(errors),
        seconds=seconds,
        p50_us=percentile(latencies, 50) * 1e6,
        p99_us=percentile(latencies, 99) * 1e6,
    )


def run_client(load: Load, *, cpu: str | None = CLIENT_CPU) -> LoadResult:
    """One run of the asyncio client in its own process, pinned to ``cpu`` (None: not
    pinned, so the kernel may run it wherever a core is free)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as spec:
        json.dump(asdict(load), spec)
    try:
        command = [sys.executable, "-m", "benchmarks.loadgen", spec.name]
        output = subprocess.run(
            pinned(command, cpu) if cpu is not None else command,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=load.duration + 60,
            check=True,
        ).stdout
    finally:
        Path(spec.name).unlink()
    return LoadResult(**json.loads(output))


def run(load: Load, *, use_wrk: bool) -> LoadResult:
    """One load run with wrk (plain GETs only) or with the asyncio client."""
    return run_wrk(load) if use_wrk and load.plain_get else run_client(load)


def main(argv: list[str]) -> None:
    """Run the asyncio client on the Load in JSON file ``argv[0]``; print the result."""
    spec = json.loads(Path(argv[0]).read_text())
    spec["tokens"] = tuple(spec["tokens"])
    result = asyncio.run(_run_client(Load(**spec)))
    print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main(sys.argv[1:])
