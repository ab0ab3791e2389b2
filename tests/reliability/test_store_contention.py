"""The SQLite store when several workers open the same file at once (found by ``make soak``)."""

from __future__ import annotations

import threading
from pathlib import Path

from openclaw_gateway.sessions.sqlite import SqliteSessionStore
from tests.reliability.figures import Figures


def test_workers_opening_a_fresh_store_at_once_all_succeed(
    tmp_path: Path, figures: Figures
) -> None:
    rounds, workers = 150, 4
    figures.injected("store: workers opening a fresh file at once", rounds)
    failures: list[BaseException] = []
    for n in range(rounds):
        path = str(tmp_path / f"sessions-{n}.sqlite3")
        stores = [SqliteSessionStore(path) for _ in range(workers)]

        def open_store(store: SqliteSessionStore) -> None:
            try:
                store.ping()
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                failures.append(exc)
            finally:
                store.close()

        threads = [threading.Thread(target=open_store, args=(s,)) for s in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not failures, f"{len(failures)} of {rounds * workers} opens failed: {failures[0]!r}"
