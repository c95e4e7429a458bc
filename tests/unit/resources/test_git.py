"""The bundled git resource, run for real in its rootfs (Debian's git and ssh) against real servers
on loopback: git daemon, git http-backend with basic auth, and an SSH server with one key."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .gitservers import Repo, build_sshd, git, git_daemon, git_http, git_sshd
from .harness import ResourceType


@pytest.fixture
def srv(tmp_path: Path) -> Path:
    d = tmp_path / "srv"
    d.mkdir()
    return d


@pytest.fixture
def daemon(srv: Path) -> Iterator[str]:
    with git_daemon(srv) as url:
        yield url


@pytest.fixture
def repo(srv: Path, daemon: str) -> Repo:
    return Repo(srv, "app")


def refs(result: list[dict[str, str]]) -> list[str]:
    return [v["ref"] for v in result]


def check(t: ResourceType, source: dict[str, Any], ref: str | None = None) -> list[dict[str, str]]:
    req: dict[str, Any] = {"source": source}
    if ref:
        req["version"] = {"ref": ref}
    return t.run("check", req).json()


# --- check ---------------------------------------------------------------------------------------------

def test_check_first_only_latest_then_oldest_to_newest(git_type: ResourceType, repo: Repo, daemon: str) -> None:
    c1, c2, c3 = (repo.commit(f"c{i}") for i in (1, 2, 3))
    src = {"uri": f"{daemon}/app.git", "branch": "main"}
    assert check(git_type, src) == [{"ref": c3}]
    assert refs(check(git_type, src, c1)) == [c1, c2, c3]
    assert refs(check(git_type, src, c3)) == [c3]
    assert refs(check(git_type, {**src, "version_depth": 2})) == [c2, c3]
    # another branch; and a version no longer in the repository starts over from the latest
    other = repo.commit("on dev", branch="dev")
    assert refs(check(git_type, {**src, "branch": "dev"})) == [other]
    assert refs(check(git_type, src, "0" * 40)) == [c3]


def test_check_root_commit_version_lists_everything(git_type: ResourceType, repo: Repo, daemon: str) -> None:
    c1, c2 = repo.commit("root"), repo.commit("second")
    assert refs(check(git_type, {"uri": f"{daemon}/app.git"}, c1)) == [c1, c2]


def test_check_paths_and_ignore_paths(git_type: ResourceType, repo: Repo, daemon: str) -> None:
    docs1 = repo.commit("docs", {"docs/a.md": "1"})
    src1 = repo.commit("src", {"src/main.go": "1"})
    both = repo.commit("both", {"src/main.go": "2", "docs/a.md": "2"})
    docs2 = repo.commit("docs again", {"docs/b.md": "1"})
    uri = f"{daemon}/app.git"
    assert refs(check(git_type, {"uri": uri, "paths": ["src/*"]})) == [both]
    assert refs(check(git_type, {"uri": uri, "paths": ["src/*"]}, docs1)) == [src1, both]
    assert refs(check(git_type, {"uri": uri, "ignore_paths": ["docs/*"]}, docs1)) == [src1, both]
    assert refs(check(git_type, {"uri": uri, "ignore_paths": ["docs/*"]})) == [both]
    assert refs(check(git_type, {"uri": uri, "paths": ["docs/*"], "ignore_paths": ["docs/b.md"]}, docs1)) == [
        docs1, both]
    assert refs(check(git_type, {"uri": uri}, docs1)) == [docs1, src1, both, docs2]


def test_check_skips_ci_skip_commits_unless_disabled(git_type: ResourceType, repo: Repo, daemon: str) -> None:
    c1 = repo.commit("c1")
    s1 = repo.commit("typo [ci skip]")
    s2 = repo.commit("wip\n\nbody says [skip ci]")
    uri = f"{daemon}/app.git"
    assert refs(check(git_type, {"uri": uri})) == [c1]
    assert refs(check(git_type, {"uri": uri}, c1)) == [c1]
    assert refs(check(git_type, {"uri": uri, "disable_ci_skip": True}, c1)) == [c1, s1, s2]
    c2 = repo.commit("c2 [ci  skipped]")  # not the marker
    assert refs(check(git_type, {"uri": uri}, c1)) == [c1, c2]
    exclude = {"uri": uri, "commit_filter": {"exclude": [r"^c2"]}}
    assert refs(check(git_type, exclude, c1)) == [c1]


def test_check_tag_filter_and_tag_regex(git_type: ResourceType, repo: Repo, daemon: str) -> None:
    a = repo.commit("a")
    repo.tag("v1.0.0")
    repo.commit("b")
    repo.tag("nightly-1")
    c = repo.commit("c")
    repo.tag("v1.1.0", annotated=True)
    repo.commit("untagged")
    uri = f"{daemon}/app.git"
    assert check(git_type, {"uri": uri, "tag_filter": "v*"}) == [{"ref": "v1.1.0", "commit": c}]
    assert check(git_type, {"uri": uri, "tag_filter": "v*", "version_depth": 5}) == [
        {"ref": "v1.0.0", "commit": a}, {"ref": "v1.1.0", "commit": c}]
    assert check(git_type, {"uri": uri, "tag_regex": r"v1\.0\..*"}) == [{"ref": "v1.0.0", "commit": a}]
    assert check(git_type, {"uri": uri, "tag_regex": "nightly"}) == []  # the whole name must match
    assert check(git_type, {"uri": uri, "tag_filter": "v*", "branch": "main"}, "v1.0.0") == [
        {"ref": "v1.1.0", "commit": c}]
    r = git_type.run("check", {"source": {"uri": uri, "tag_filter": "v*", "tag_regex": "v.*"}})
    assert r.rc == 1 and "cannot provide both tag_filter and tag_regex" in r.stderr


def test_bad_sources_are_refused(git_type: ResourceType, work: Path) -> None:
    for script, req, message in [
        ("check", {"source": {}}, "invalid payload (missing uri)"),
        ("in", {"source": {"branch": "main"}, "version": {"ref": "abc"}}, "invalid payload (missing uri)"),
        ("check", {"source": {"uri": "git://127.0.0.1:1/x.git", "branhc": "main"}},
         "found unknown keys in source: branhc"),
        ("check", {"source": {"uri": "git://127.0.0.1:1/x.git", "git_crypt_key": "k"}},
         "source: git_crypt_key not supported by airside's git resource"),
        ("in", {"source": {"uri": "git://127.0.0.1:1/x.git"}, "params": {"depht": 1}},
         "found unknown keys in get params: depht"),
        ("out", {"source": {"uri": "git://127.0.0.1:1/x.git", "branch": "main"}, "params": {}},
         "invalid payload (missing repository)"),
        ("out", {"source": {"uri": "git://127.0.0.1:1/x.git"}, "params": {"repository": "r"}},
         "invalid payload (missing branch)"),
    ]:
        r = git_type.run(script, req, None if script == "check" else work)
        assert r.rc == 1 and message in r.stderr, (req, r.stderr)
        assert r.stdout == ""


def test_unreachable_server_fails_with_gits_message(git_type: ResourceType, srv: Path) -> None:
    with git_daemon(srv) as url:
        r = git_type.run("check", {"source": {"uri": f"{url}/missing.git"}})
    assert r.rc == 1 and "git clone" in r.stderr and "missing.git" in r.stderr


# --- in ------------------------------------------------------------------------------------------------

def test_in_clones_at_the_ref_with_metadata(git_type: ResourceType, repo: Repo, daemon: str, work: Path) -> None:
    c1 = repo.commit("first version\n\nwith a body", {"app.txt": "v1"})
    repo.tag("v1", annotated=True)
    repo.commit("second", {"app.txt": "v2"})
    src = {"uri": f"{daemon}/app.git", "branch": "main",
           "git_config": [{"name": "core.abbrev", "value": "12"}]}
    r = git_type.run("in", {"source": src, "version": {"ref": c1}, "params": {}}, work)
    resp = r.json()
    assert resp["version"] == {"ref": c1}
    assert (work / "app.txt").read_text() == "v1"
    assert git(work, "rev-parse", "HEAD") == c1
    meta = {m["name"]: m["value"] for m in resp["metadata"]}
    assert meta["commit"] == c1 and meta["author"] == "Ada Author" and meta["committer"] == "Carl Committer"
    assert meta["message"] == "first version\n\nwith a body" and meta["tags"] == "v1"
    assert "branch" not in meta  # main moved on: no branch points at c1
    dot = work / ".git"
    assert (dot / "ref").read_text() == c1 + "\n"
    assert (dot / "short_ref").read_text() == c1[:7]
    assert (dot / "committer").read_text() == "ada@example.com"
    assert (dot / "commit_message").read_text() == "first version\n\nwith a body\n"
    assert (dot / "tags").read_text() == "v1\n"
    assert (dot / "describe_ref").read_text() == "v1\n"
    assert json.loads((dot / "metadata.json").read_text()) == resp["metadata"]
    assert git(work, "config", "core.abbrev") == "12"  # git_config kept in the clone


def test_in_without_a_version_takes_head(git_type: ResourceType, repo: Repo, daemon: str, work: Path) -> None:
    repo.commit("a")
    head = repo.commit("b")
    resp = git_type.run("in", {"source": {"uri": f"{daemon}/app.git"}, "params": {}}, work).json()
    assert resp["version"] == {"ref": head}
    assert {m["name"]: m["value"] for m in resp["metadata"]}["branch"] == "main"


def test_in_shallow_deepens_until_the_ref(git_type: ResourceType, repo: Repo, daemon: str, work: Path) -> None:
    for i in range(3):
        repo.commit(f"ancient {i}")
    old = repo.commit("old", {"f": "old"})
    for i in range(5):
        repo.commit(f"newer {i}")
    r = git_type.run("in", {"source": {"uri": f"{daemon}/app.git"}, "version": {"ref": old},
                            "params": {"depth": 1}}, work)
    assert r.json()["version"] == {"ref": old}
    assert git(work, "rev-parse", "HEAD") == old and (work / "f").read_text() == "old"
    assert (work / ".git" / "shallow").exists()  # still a shallow clone, not the whole history
    assert "could not find" in r.stderr


def test_in_submodules(git_type: ResourceType, srv: Path, daemon: str, tmp_path: Path) -> None:
    lib = Repo(srv, "lib")
    lib.commit("lib", {"lib.txt": "library"})
    app = Repo(srv, "app")
    app.commit("app", {"app.txt": "app"})
    git(app.work, "-c", "protocol.file.allow=always", "submodule", "add", "--quiet", f"{daemon}/lib.git", "vendor/lib",
        env=app.env)
    head = app.commit("add the submodule", {})
    src = {"uri": f"{daemon}/app.git"}
    for params, present in [({}, True), ({"submodules": "none"}, False), ({"submodules": ["vendor/lib"]}, True),
                            ({"submodules": ["other"]}, False)]:
        work = tmp_path / f"w{len(list(tmp_path.iterdir()))}"
        work.mkdir()
        r = git_type.run("in", {"source": src, "version": {"ref": head}, "params": params}, work)
        assert r.rc == 0, r.stderr
        assert (work / "vendor/lib/lib.txt").exists() == present, params


# --- out -----------------------------------------------------------------------------------------------

def clone_into(sources: Path, repo: Repo, name: str = "repo") -> Path:
    d = sources / name
    git(sources, "clone", "--quiet", str(repo.bare), str(d), env=repo.env)
    return d


def test_out_pushes_a_commit_and_a_tag(git_type: ResourceType, repo: Repo, daemon: str, work: Path) -> None:
    repo.commit("base")
    local = clone_into(work, repo)
    (local / "new.txt").write_text("new")
    git(local, "add", "new.txt", env=repo.env)
    git(local, "commit", "--quiet", "-m", "made in a task", env=repo.env)
    made = git(local, "rev-parse", "HEAD", env=repo.env)
    (work / "version").write_text("2.0.0\n")
    params = {"repository": "repo", "tag": "version", "tag_prefix": "v"}
    resp = git_type.run("out", {"source": {"uri": f"{daemon}/app.git", "branch": "main"}, "params": params},
                        work).json()
    assert resp["version"] == {"ref": made}
    assert repo.rev("main") == made
    assert repo.rev("v2.0.0^{commit}") == made
    assert {m["name"]: m["value"] for m in resp["metadata"]}["message"] == "made in a task"


def test_out_rejected_then_rebased(git_type: ResourceType, repo: Repo, daemon: str, work: Path) -> None:
    repo.commit("base")
    local = clone_into(work, repo)
    (local / "mine.txt").write_text("mine")
    git(local, "add", "mine.txt", env=repo.env)
    git(local, "commit", "--quiet", "-m", "mine", env=repo.env)
    theirs = repo.commit("theirs", {"theirs.txt": "theirs"})  # the branch moved meanwhile
    src = {"uri": f"{daemon}/app.git", "branch": "main"}
    r = git_type.run("out", {"source": src, "params": {"repository": "repo"}}, work)
    assert r.rc == 1 and "rejected" in r.stderr
    assert repo.rev("main") == theirs
    resp = git_type.run("out", {"source": src, "params": {"repository": "repo", "rebase": True}}, work).json()
    pushed = resp["version"]["ref"]
    assert repo.rev("main") == pushed and repo.rev(f"{pushed}~1") == theirs
    assert git(repo.bare, "show", f"{pushed}:mine.txt", env=repo.env) == "mine"


def test_out_branch_override_and_force(git_type: ResourceType, repo: Repo, daemon: str, work: Path) -> None:
    repo.commit("base")
    local = clone_into(work, repo)
    git(local, "commit", "--quiet", "--allow-empty", "-m", "to a release branch", env=repo.env)
    src = {"uri": f"{daemon}/app.git", "branch": "main"}
    resp = git_type.run("out", {"source": src, "params": {"repository": "repo", "branch": "release"}}, work).json()
    assert resp["version"] == {"ref": repo.rev("release"), "branch": "release"}
    assert repo.rev("main") != repo.rev("release")
    git(local, "commit", "--quiet", "--amend", "--allow-empty", "-m", "rewritten", env=repo.env)
    rewritten = git(local, "rev-parse", "HEAD", env=repo.env)
    assert git_type.run("out", {"source": src, "params": {"repository": "repo", "branch": "release"}}, work).rc == 1
    ok = git_type.run("out", {"source": src, "params": {"repository": "repo", "branch": "release", "force": True}},
                      work)
    assert ok.rc == 0, ok.stderr
    assert repo.rev("release") == rewritten


# --- credentials ----------------------------------------------------------------------------------------

def test_http_username_password(git_type: ResourceType, srv: Path, work: Path) -> None:
    r = Repo(srv, "private")
    head = r.commit("secret work")
    with git_http(srv, "alice:s3cret") as url:
        src = {"uri": f"{url}/private.git", "branch": "main"}
        assert check(git_type, {**src, "username": "alice", "password": "s3cret"}) == [{"ref": head}]
        for creds in ({}, {"username": "alice", "password": "wrong"}):
            bad = git_type.run("check", {"source": {**src, **creds}}, timeout=60)
            assert bad.rc == 1 and "git clone" in bad.stderr, bad.stderr
        local = clone_into(work, r)
        git(local, "commit", "--quiet", "--allow-empty", "-m", "over http", env=r.env)
        pushed = git_type.run("out", {"source": {**src, "username": "alice", "password": "s3cret"},
                                      "params": {"repository": "repo"}}, work).json()["version"]["ref"]
    assert r.rev("main") == pushed


@pytest.fixture(scope="session")
def sshd_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sshd(tmp_path_factory.mktemp("sshd") / "sshd")


def keypair(d: Path, name: str) -> Path:
    key = d / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
    return key


def test_ssh_private_key(git_type: ResourceType, sshd_binary: Path, srv: Path, tmp_path: Path, work: Path) -> None:
    r = Repo(srv, "viassh")
    head = r.commit("over ssh")
    good, other = keypair(tmp_path, "good"), keypair(tmp_path, "other")
    with git_sshd(sshd_binary, srv, good.with_suffix(".pub")) as url:
        src = {"uri": f"{url}/viassh.git", "branch": "main", "private_key": good.read_text()}
        assert check(git_type, src) == [{"ref": head}]
        bad = git_type.run("check", {"source": {**src, "private_key": other.read_text()}}, timeout=60)
        assert bad.rc == 1 and "git clone" in bad.stderr
        fetched = git_type.run("in", {"source": src, "version": {"ref": head}, "params": {}}, work)
        assert fetched.json()["version"] == {"ref": head}
        git(work, "commit", "--quiet", "--allow-empty", "-m", "back over ssh", env=r.env)
        sources = work.parent
        out = git_type.run("out", {"source": src, "params": {"repository": work.name}}, sources).json()
    assert r.rev("main") == out["version"]["ref"]
