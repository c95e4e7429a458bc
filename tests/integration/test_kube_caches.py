"""Task caches that persist in Job mode (issue 16 item 6), in the cluster's artifact store.

`test_sweep_*`: web's sweep of the artifact store (a real volume server on loopback; the dispatcher's clock
given) removes a cache unused for cache_ttl and keeps a fresh one, removes saved volumes a newer one
superseded, waits for an attempt's copy before removing its parent, and never looks at inputs or outputs.

`test_caches_*`: through web with runtime kubernetes on the kind cluster (the artifact store a pod in the
test's namespace, as in tests/integration/runtime/test_kubernetes.py, whose fixtures this module uses):
`airside execute` of one task file (one cache key) again and again — the first run misses and saves, the
second finds the file the first left, a failed run does not update the cache, and two concurrent runs
leave the whole cache of one of them (the last to succeed), never a mix.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airside.baggageclaim.client import VolumeClient
from airside.baggageclaim.server import BackgroundServer
from airside.config import Settings
from airside.runtime.attempt import AttemptNames
from airside.web.kube_dispatch import FETCH_ROLE, KubeDispatcher
from tests.pg import free_port
from tests.procs import WebProc, run_cli, wait_for

TOKEN = "store-token"
TTL = 3600.0


# --------------------------------------------------------------------------- the sweep (no cluster)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    port = free_port()
    server = BackgroundServer(Settings(volumes_dir=tmp_path / "volumes", baggageclaim_driver="naive",
                                       baggageclaim_bind_host="127.0.0.1", baggageclaim_bind_port=port,
                                       baggageclaim_token=TOKEN, data_dir=tmp_path / "data", log_level="warning"))
    server.start()
    try:
        with VolumeClient(f"http://127.0.0.1:{port}", TOKEN) as vc:
            yield vc
    finally:
        server.stop()


def _dispatcher(url: str, now: float) -> KubeDispatcher:
    # only what sweep_caches uses: the store's URL and token, the settings' cache_ttl and web's clock
    d = KubeDispatcher.__new__(KubeDispatcher)
    d.web = SimpleNamespace(settings=Settings(cache_ttl=TTL), clock=lambda: now)
    d.store_url, d.token = url, TOKEN
    return d


def _saved(vc: VolumeClient, key: str, build: int, saved_at: float, last_used: float | None = None) -> str:
    """A cache volume as an attempt's upload-outputs and then web's save leave it."""
    handle = AttemptNames(build, 1).cache_saved_volume(key, "/tmp/build/work/c")
    cache = AttemptNames(build, 1).cache_volume(key, "/tmp/build/work/c")
    vc.create(handle, properties={"build": str(build), "step": "task", "role": "cache", "cache": cache,
                                  "path": "/tmp/build/work/c", "last_used": str(last_used or saved_at),
                                  "saved_at": str(saved_at)})
    return handle


def test_sweep_removes_unused_and_superseded_caches_and_keeps_fresh_ones(store: VolumeClient) -> None:
    now = time.time()
    fresh = _saved(store, "job-a", 10, saved_at=now - 100)
    superseded = _saved(store, "job-a", 9, saved_at=now - 200)  # an older save of the same cache
    used_lately = _saved(store, "job-b", 3, saved_at=now - TTL - 500, last_used=now - 10)  # old, but hit recently
    expired = _saved(store, "job-c", 4, saved_at=now - TTL - 100)  # unused for longer than cache_ttl
    held = _saved(store, "job-d", 5, saved_at=now - TTL - 100)  # expired, but an attempt is copying it right now
    copy = AttemptNames(6, 1).cache_fetch_volume(0)
    store.create(copy, strategy="cow", parent=held, properties={**AttemptNames(6, 1).properties(FETCH_ROLE)})
    unsaved = AttemptNames(7, 1).cache_saved_volume("job-e", "/tmp/build/work/c")  # uploaded, not (yet) saved
    store.create(unsaved, properties={"build": "7", "step": "task"})
    others = [store.create("b10-a1-in-src").handle, store.create("b10-a1-output-out").handle]

    removed = _dispatcher(store.base_url, now).sweep_caches()

    assert sorted(removed) == sorted([superseded, expired]), removed
    left = {v.handle for v in store.list()}
    assert {fresh, used_lately, held, copy, unsaved, *others} == left, left
    # much later: the copy's fetch is long over, so it goes and then its parent; the unsaved upload too
    later = _dispatcher(store.base_url, now + TTL + 1).sweep_caches()
    assert later[0] == copy and set(later) == {copy, held, fresh, used_lately, unsaved}, later
    assert {v.handle for v in store.list()} == set(others)


DUMMY_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: none, user: {token: none}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
"""


def test_web_sweeps_the_artifact_store_on_its_own(store: VolumeClient, tmp_path: Path) -> None:
    """A web process with runtime kubernetes (no build, so no cluster is contacted: the kubeconfig is a dummy)
    sweeps the artifact store by itself: the cache unused for longer than cache_ttl goes, the fresh one stays."""
    now = time.time()
    expired = _saved(store, "job-old", 1, saved_at=now - 7200)
    fresh = _saved(store, "job-new", 2, saved_at=now - 60)
    (tmp_path / "kubeconfig").write_text(DUMMY_KUBECONFIG)
    web = WebProc(tmp_path, runtime="kubernetes", kubernetes_kubeconfig=tmp_path / "kubeconfig",
                  kubernetes_artifact_url=store.base_url, baggageclaim_token=TOKEN, cache_ttl=3600)
    try:
        web.start()
        wait_for(lambda: expired not in {v.handle for v in store.list()}, 30,
                 f"web's sweep to remove {expired}\n{web.output()[-2000:]}")
        assert {v.handle for v in store.list()} == {fresh}
        assert "caches removed from the artifact store" in web.output()
    finally:
        web.stop()


# --------------------------------------------------------------------------- through web on the kind cluster

pytest.importorskip("kubernetes", reason="pip install kubernetes")
from tests.integration.runtime import test_kubernetes as _kt  # noqa: E402

# the kubernetes runtime's fixtures: the cluster, its shell image, and the artifact store (airside baggageclaim
# in a pod, its Service `artifacts`, a port-forward to it) in the namespace below
cluster, runtime, shell_image, artifact_store = _kt.cluster, _kt.runtime, _kt.shell_image, _kt.artifact_store


@pytest.fixture
def namespace(cluster: tuple[str, Any]) -> Any:
    """A namespace per test, deleted after it (test_kubernetes' is per module: it would keep the first test's
    store Service, which the next test's store then cannot create)."""
    import kubernetes

    core = kubernetes.client.CoreV1Api(cluster[1])
    ns = f"airside-it-cache-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": ns}})
    wait_for(lambda: core.read_namespaced_service_account("default", ns), 60,
             f"the default service account of namespace {ns}", interval=0.5)
    yield ns
    core.delete_namespace(ns, propagation_policy="Background")

LINE = re.compile(r"^cache (?P<path>\S+): (?P<what>hit \((?P<bytes>\d+) bytes\)|miss|saved)$", re.MULTILINE)


@pytest.fixture
def web(cluster: tuple[str, Any], namespace: str, artifact_store: str, tmp_path: Path) -> Any:
    """Web with runtime kubernetes: it reaches the store through the fixture's port-forward, the pods by the
    store's Service in the namespace."""
    w = WebProc(tmp_path, runtime="kubernetes", kubernetes_namespace=namespace, kubernetes_kubeconfig=cluster[0],
                kubernetes_artifact_url="http://artifacts:7788", kubernetes_artifact_web_url=artifact_store,
                baggageclaim_token="test-token", kubernetes_schedule_timeout=60,
                kubernetes_airside_image=os.environ.get("AIRSIDE_TEST_KUBE_AIRSIDE_IMAGE", "airside:0.1.0"))
    w.start()
    yield w
    w.stop()


def _task(path: Path, image: str, script: str) -> Path:
    repo, _, tag = image.rpartition(":")
    path.write_text(textwrap.dedent(f"""\
        platform: linux
        image_resource: {{type: registry-image, source: {{repository: "{repo}", tag: "{tag}"}}}}
        caches: [{{path: c}}]
        run: {{path: /bin/sh, args: [-c, {json.dumps(script)}]}}
    """))
    return path


def _execute(web: WebProc, task: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    r = run_cli(web, "execute", "-c", str(task), timeout=timeout)
    print(r.stdout, r.stderr, sep="\n")
    return r


def _cache_lines(r: subprocess.CompletedProcess) -> list[str]:
    return [m["what"] for m in LINE.finditer(r.stderr) if m["path"] == "/tmp/build/work/c"]


def _store_volumes(url: str) -> list[str]:
    with VolumeClient(url, "test-token") as vc:
        return sorted(v.handle for v in vc.list())


@pytest.mark.kind
@pytest.mark.timeout(900)
def test_caches_persist_between_runs_and_a_failed_run_does_not_update_them(
        web: WebProc, artifact_store: str, shell_image: str, tmp_path: Path) -> None:
    task = tmp_path / "task.yml"  # one file: one cache key (airside execute keys caches by the task file)
    _task(task, shell_image, 'echo "found: $(cat c/stamp 2>/dev/null || echo nothing)"; echo first > c/stamp')
    r = _execute(web, task)
    assert r.returncode == 0, r.stderr + web.output()[-3000:]
    assert "found: nothing" in r.stdout and _cache_lines(r) == ["miss", "saved"], r.stderr

    _task(task, shell_image, 'echo "found: $(cat c/stamp)"; echo failed-run > c/stamp; exit 7')
    r = _execute(web, task)
    assert r.returncode == 7, r.stderr + web.output()[-3000:]
    assert "found: first" in r.stdout, r.stdout
    hit = [m for m in LINE.finditer(r.stderr) if m["what"].startswith("hit")]
    assert len(hit) == 1 and int(hit[0]["bytes"]) > 0, r.stderr
    assert _cache_lines(r) == [hit[0]["what"]], r.stderr  # a failed run saves nothing

    _task(task, shell_image, 'echo "found: $(cat c/stamp)"')
    r = _execute(web, task)
    assert r.returncode == 0 and "found: first" in r.stdout, r.stdout + r.stderr  # not "failed-run"
    assert [w.split(" (")[0] for w in _cache_lines(r)] == ["hit", "saved"], r.stderr
    # once the build is cleaned up: one saved volume of the cache is left (the ones it superseded removed by the
    # build's own cleanup, seconds after it ended: web's periodic sweep is a minute away), no attempt's copy
    wait_for(lambda: len(_store_volumes(artifact_store)) == 1, 20,
             "the build's cleanup to leave the artifact store with one volume")
    left = _store_volumes(artifact_store)
    assert re.fullmatch(r"cache-[0-9a-f]{24}-b3-a1", left[0]), left


@pytest.mark.kind
@pytest.mark.timeout(900)
def test_concurrent_runs_with_one_cache_key_leave_one_whole_cache(
        web: WebProc, artifact_store: str, shell_image: str, tmp_path: Path) -> None:
    task = tmp_path / "task.yml"
    # each run replaces the whole cache with 20 files naming its build, slowly enough that the two overlap
    _task(task, shell_image, 'me=$(hostname); rm -f c/f*; for i in $(seq 20); do echo "$me" > c/f$i; sleep 0.2; '
                             'done; echo "wrote as $me"')
    results: list[subprocess.CompletedProcess] = []
    runs = [threading.Thread(target=lambda: results.append(_execute(web, task))) for _ in range(2)]
    for t in runs:
        t.start()
    for t in runs:
        t.join(300)
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    writers = {r.stdout.split("wrote as ")[1].split()[0] for r in results}
    assert len(writers) == 2, writers
    _task(task, shell_image, 'cat c/f* | sort | uniq -c')
    r = _execute(web, task)
    assert r.returncode == 0, r.stderr
    counts = [line.split() for line in r.stdout.splitlines() if line.strip() and line.split()[-1] in writers]
    assert len(counts) == 1 and counts[0][0] == "20", r.stdout  # 20 files, all of one writer
