"""gunicorn config for ``python -m bench.stream_memory``: gunicorn.conf.py plus a probe in the worker.

The probe answers one-line commands on the unix socket ``$STREAM_MEMORY_SOCKET``:

- ``start FRAMES``: the baseline (and tracemalloc with FRAMES frames when FRAMES > 0);
- ``report PATH``: JSON with the worker's memory split (glibc heap, pymalloc, other anonymous
  memory) and its live greenlets with their saved C stacks; tracemalloc's snapshots go to
  ``PATH`` and ``PATH.base``.
"""

import collections
import json
import os
import socket
import sys
import tempfile
import tracemalloc
from pathlib import Path

exec(compile(Path("gunicorn.conf.py").read_text(), "gunicorn.conf.py", "exec"))


def _smaps() -> dict[str, int]:
    """Resident KiB: the brk heap (glibc's small allocations) and anonymous mappings."""
    out = {"heap": 0, "anon": 0}
    name = None
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            parts = line.split()
            if "-" in parts[0] and not parts[0].endswith(":"):
                name = parts[5] if len(parts) > 5 else ""
            elif parts[0] == "Rss:" and name in ("[heap]", ""):
                out["heap" if name else "anon"] += int(parts[1])
    return out


def _pymalloc_bytes() -> int:
    """Bytes in pymalloc's allocated blocks (objects of 512 bytes or less)."""
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        for line in capture.read().decode().splitlines():
            if line.startswith("# bytes in allocated blocks"):
                return int(line.split("=")[1].replace(",", ""))
    return 0


def _greenlets() -> list[tuple[str, int, int]]:
    """Live greenlets by where they wait: (frames, count, mean saved C stack in bytes)."""
    import gc

    import greenlet

    count: collections.Counter[str] = collections.Counter()
    saved: collections.Counter[str] = collections.Counter()
    for obj in gc.get_objects():
        if isinstance(obj, greenlet.greenlet) and not obj.dead:
            names, frame = [], obj.gr_frame
            while frame is not None and len(names) < 4:
                names.append(frame.f_code.co_name)
                frame = frame.f_back
            key = f"{type(obj).__name__}: {' < '.join(names)}"
            count[key] += 1
            saved[key] += obj._stack_saved
    return [(key, n, saved[key] // n) for key, n in count.most_common(8)]


def post_worker_init(worker):  # noqa: ANN001 - gunicorn's hook signature
    from gevent.server import StreamServer

    path = os.environ["STREAM_MEMORY_SOCKET"]
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(4)
    state = {}

    def handle(sock, address):
        command, _, argument = sock.makefile("rb").readline().decode().strip().partition(" ")
        answer = {}
        if command == "start":
            if int(argument or 0) > 0:
                tracemalloc.start(int(argument))
                state["snapshot"] = tracemalloc.take_snapshot()
            state["smaps"], state["pymalloc"] = _smaps(), _pymalloc_bytes()
        elif command == "report":
            smaps, pymalloc = _smaps(), _pymalloc_bytes()
            snapshot = tracemalloc.take_snapshot() if tracemalloc.is_tracing() else None
            answer = {
                "heap_kb": smaps["heap"] - state["smaps"]["heap"],
                "anon_kb": smaps["anon"] - state["smaps"]["anon"],
                "pymalloc_kb": (pymalloc - state["pymalloc"]) // 1024,
                "greenlets": _greenlets(),
            }
            if snapshot is not None:
                snapshot.dump(argument)
                state["snapshot"].dump(argument + ".base")
        sock.sendall(json.dumps(answer).encode() + b"\n")
        sock.close()

    worker.memory_probe = StreamServer(listener, handle)
    worker.memory_probe.start()
