"""Real git servers on loopback for the git resource's tests: `git daemon` (git://), `git http-backend`
behind a small threaded HTTP server with basic auth (http://), and an SSH server (tests/unit/resources/
sshd, Go, golang.org/x/crypto/ssh) that runs git-upload-pack / git-receive-pack for one key (ssh://);
plus Repo, a working clone that makes commits and pushes them."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("AIRSIDE_CACHE", "/var/cache/airside"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def git_env(home: Path) -> dict[str, str]:
    """The host git's environment for the test's own commits: no user or system config."""
    return {"PATH": os.environ["PATH"], "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C",
            "GIT_AUTHOR_NAME": "Ada Author", "GIT_AUTHOR_EMAIL": "ada@example.com",
            "GIT_COMMITTER_NAME": "Carl Committer", "GIT_COMMITTER_EMAIL": "carl@example.com"}


def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    p = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=env or git_env(cwd))
    assert p.returncode == 0, f"git {' '.join(args)}: {p.stderr}"
    return p.stdout.strip()


class Repo:
    """A bare repository `<base>/<name>.git` served by the servers, and a working clone of it."""

    def __init__(self, base: Path, name: str) -> None:
        self.bare = base / f"{name}.git"
        self.work = base.parent / "clones" / name
        self.home = base.parent / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.env = git_env(self.home)
        self.clock = 1_770_000_000  # commit and tag dates one minute apart: creatordate order is certain
        git(base, "init", "--quiet", "--bare", "-b", "main", str(self.bare), env=self.env)
        git(self.bare, "config", "http.receivepack", "true", env=self.env)
        git(self.bare, "config", "uploadpack.allowFilter", "true", env=self.env)
        self.work.mkdir(parents=True)
        git(self.work, "init", "--quiet", "-b", "main", env=self.env)
        git(self.work, "remote", "add", "origin", str(self.bare), env=self.env)

    def _tick(self) -> dict[str, str]:
        self.clock += 60
        stamp = f"@{self.clock} +0000"
        return {**self.env, "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}

    def commit(self, message: str, files: dict[str, str] | None = None, branch: str = "main") -> str:
        for path, text in (files or {f"file-{self.clock}.txt": message}).items():
            (self.work / path).parent.mkdir(parents=True, exist_ok=True)
            (self.work / path).write_text(text)
        git(self.work, "add", "-A", env=self.env)
        git(self.work, "commit", "--quiet", "--allow-empty", "-m", message, env=self._tick())
        git(self.work, "push", "--quiet", "origin", f"HEAD:refs/heads/{branch}", env=self.env)
        return git(self.work, "rev-parse", "HEAD", env=self.env)

    def tag(self, name: str, ref: str = "HEAD", annotated: bool = False) -> None:
        args = ["tag", "-a", "-m", f"release {name}", name, ref] if annotated else ["tag", name, ref]
        git(self.work, *args, env=self._tick())
        git(self.work, "push", "--quiet", "origin", f"refs/tags/{name}", env=self.env)

    def rev(self, ref: str) -> str:
        return git(self.bare, "rev-parse", ref, env=self.env)


@contextmanager
def git_daemon(base: Path) -> Iterator[str]:
    """git:// on loopback; yields the URL prefix (git://127.0.0.1:PORT)."""
    port = free_port()
    proc = subprocess.Popen(["git", "daemon", "--reuseaddr", "--export-all", "--enable=receive-pack",
                             "--informative-errors", f"--base-path={base}", "--listen=127.0.0.1",
                             f"--port={port}", str(base)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc)
        yield f"git://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


class _Backend(BaseHTTPRequestHandler):
    """CGI for `git http-backend`: basic auth first, then the request through the backend."""

    base: Path
    credentials: str  # "user:password"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._serve()

    def do_POST(self) -> None:  # noqa: N802
        self._serve()

    def _serve(self) -> None:
        expected = "Basic " + base64.b64encode(self.credentials.encode()).decode()
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        env = {"PATH": os.environ["PATH"], "GIT_PROJECT_ROOT": str(self.base), "GIT_HTTP_EXPORT_ALL": "1",
               "PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": self.command,
               "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
               "REMOTE_USER": self.credentials.split(":")[0], "REMOTE_ADDR": "127.0.0.1",
               "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
               "GIT_PROTOCOL": self.headers.get("Git-Protocol", "")}
        out = subprocess.run(["git", "http-backend"], input=body, capture_output=True, env=env).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@contextmanager
def git_http(base: Path, credentials: str) -> Iterator[str]:
    """http:// with basic auth on loopback; yields the URL prefix (http://127.0.0.1:PORT)."""
    handler = type("Backend", (_Backend,), {"base": base, "credentials": credentials})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def build_sshd(out: Path) -> Path:
    """Builds the test SSH server (Go; its module from the Go module proxy, cached in AIRSIDE_CACHE)."""
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-buildvcs=false -mod=mod", "CGO_ENABLED": "0",
           "GOMODCACHE": str(CACHE / "go" / "mod"), "GOCACHE": str(CACHE / "go" / "build")}
    go = "go" if subprocess.run(["sh", "-c", "command -v go"], capture_output=True).returncode == 0 \
        else "/usr/local/go/bin/go"
    p = subprocess.run([go, "build", "-o", str(out), "."], cwd=HERE / "sshd", capture_output=True, text=True,
                       env=env, timeout=600)
    assert p.returncode == 0, f"building the test sshd failed:\n{p.stderr}"
    return out


@contextmanager
def git_sshd(binary: Path, base: Path, public_key: Path) -> Iterator[str]:
    """ssh:// on loopback for the one key; yields the URL prefix (ssh://git@127.0.0.1:PORT)."""
    proc = subprocess.Popen([str(binary), "-base", str(base), "-authorized-key", str(public_key)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "port N" once it listens (or EOF if it died)
        assert line.startswith("port "), f"test sshd did not start: {line!r}"
        yield f"ssh://git@127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.terminate()
        proc.wait(10)
