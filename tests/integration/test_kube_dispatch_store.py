"""Web's Kubernetes dispatcher waits for the cluster's artifact store (a real volume server that starts
late) instead of erroring a build the moment its pod is not up yet (seen in an e2e run: the first build of a
fresh release errored `Connection refused`)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from structlog.testing import capture_logs

from airside.baggageclaim.client import VolumeClientError
from airside.baggageclaim.server import BackgroundServer
from airside.config import Settings
from airside.core import log
from airside.web.kube_dispatch import KubeDispatcher
from tests.procs import wait_for

TOKEN = "store-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dispatcher(port: int, wait: float, token: str = TOKEN) -> KubeDispatcher:
    # only what _await_store uses: the settings and the store's URL and token (no cluster needed)
    d = KubeDispatcher.__new__(KubeDispatcher)
    d.web = SimpleNamespace(settings=Settings(kubernetes_schedule_timeout=wait))
    d.store_url, d.token = f"http://127.0.0.1:{port}", token
    return d


def _store(tmp_path: Path, port: int) -> BackgroundServer:
    return BackgroundServer(Settings(volumes_dir=tmp_path / "volumes", baggageclaim_driver="naive",
                                     baggageclaim_bind_host="127.0.0.1", baggageclaim_bind_port=port,
                                     baggageclaim_token=TOKEN, data_dir=tmp_path / "data", log_level="warning"))


def test_waits_for_an_artifact_store_that_starts_late(tmp_path: Path) -> None:
    port = _free_port()
    store = _store(tmp_path, port)
    started = threading.Event()
    failed: list[BaseException] = []

    def start_once_refused(logs: list[dict]) -> None:
        # the store starts only after the dispatcher was refused and said it waits: "late" is a fact, not a guess
        try:
            wait_for(lambda: any(e["event"] == "artifact store not answering; waiting" for e in logs), 30,
                     "the dispatcher to be refused and log that it waits")
            store.start()
            started.set()
        except BaseException as e:  # noqa: BLE001 - reported by the test thread below
            failed.append(e)

    with capture_logs() as logs:
        starter = threading.Thread(target=start_once_refused, args=(logs,), daemon=True)
        starter.start()
        try:
            _dispatcher(port, wait=60)._await_store(log.get("test"))
            assert started.is_set(), f"_await_store returned before the store was started: {failed or logs}"
        finally:
            starter.join(40)
            if started.is_set():
                store.stop()


def test_gives_up_after_the_schedule_timeout_naming_it(tmp_path: Path) -> None:
    with pytest.raises(VolumeClientError) as e:
        _dispatcher(_free_port(), wait=2)._await_store(log.get("test"))
    assert e.value.status == 0 and "cannot reach the volume server" in e.value.message
    assert "waited 2s: kubernetes_schedule_timeout" in e.value.message


def test_a_wrong_token_fails_at_once(tmp_path: Path) -> None:
    port = _free_port()
    store = _store(tmp_path, port).start()
    try:
        with capture_logs() as logs, pytest.raises(VolumeClientError) as e:
            _dispatcher(port, wait=60, token="wrong")._await_store(log.get("test"))
        assert e.value.status == 401
        assert not [x for x in logs if "waiting" in x["event"]]  # not retried: waiting would not fix it
    finally:
        store.stop()
