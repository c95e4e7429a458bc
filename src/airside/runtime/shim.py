"""The per-container supervisor ("shim"): `python -S shim.py <container-dir> [--notify-fd N]`
(`python -m airside.runtime.shim …` works too).

A worker starts one shim per container in its own session, so the container outlives the worker.
The shim reads `command.json` from the container's state dir, runs the command with stdin from
/dev/null (or from the file `stdin` names: a resource script's request), copies its stdout and stderr
into `output.log` as framed records, and when the command
has exited writes `exit.json` atomically. Stdlib only, so it starts fast and never depends on the
worker's state.

State dir layout (`<state_dir>/<handle>/`), shared by every backend that uses the shim:

    spec.json      the ContainerSpec as prepared (written by the runtime)
    stdin          what the command reads on stdin, when command.json names it
    command.json   what the shim runs: argv, cwd, env, uid/gid/groups, stdin, pid_file, runc_log, oom_cgroup,
                   signal_exit_codes (128+N means "killed by signal N", as runc reports it)
    shim.pid       "<pid> <starttime>" of the shim (written by both the runtime and the shim)
    pid            "<pid> <starttime>" of the task process (or the pid runc writes)
    output.log     records: 1 byte stream (1 stdout, 2 stderr), 4 bytes big-endian length, data
    exit.json      {"code": int, "reason": str, "error": str|null}; written after output.log is complete
    shim.log       the shim's own stderr

`error` is set when the command could not be started at all (the runtime raises it from wait()).
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import struct
import subprocess
import sys
import time

HEADER = struct.Struct(">BI")
STREAMS = {1: "stdout", 2: "stderr"}
CHUNK = 65536
LINGER_SECONDS = 1.0  # after the process exits, how long to wait for grandchildren holding the pipes


def proc_starttime(pid: int) -> int | None:
    """The process's start time (clock ticks since boot), or None if it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def write_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    dfd = os.open(os.path.dirname(path) or ".", os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def write_pidfile(path: str, pid: int) -> None:
    write_atomic(path, f"{pid} {proc_starttime(pid) or 0}\n".encode())


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _oom_killed(cgroup: str | None) -> bool:
    if not cgroup:
        return False
    for name in ("memory.oom_control", "memory.events"):  # cgroup v1, v2
        try:
            with open(os.path.join(cgroup, name)) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill" and int(value) > 0:
                        return True
        except (OSError, ValueError):
            continue
    return False


def _runc_error(log_path: str | None) -> str | None:
    """The last error runc logged (its --log file, JSON lines), if any."""
    if not log_path:
        return None
    last = None
    try:
        with open(log_path, errors="replace") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("level") in ("error", "fatal"):
                    last = entry.get("msg")
    except OSError:
        return None
    return last


class _Log:
    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, stream: int, data: bytes) -> None:
        os.write(self.fd, HEADER.pack(stream, len(data)) + data)

    def close(self) -> None:
        os.fsync(self.fd)
        os.close(self.fd)


def run(cdir: str, notify_fd: int | None) -> int:
    with open(os.path.join(cdir, "command.json")) as f:
        cmd = json.load(f)
    write_pidfile(os.path.join(cdir, "shim.pid"), os.getpid())
    log = _Log(os.path.join(cdir, "output.log"))
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    error = None
    child = None
    stdin = open(cmd["stdin"], "rb") if cmd.get("stdin") else subprocess.DEVNULL  # noqa: SIM115 - closed below
    try:
        child = subprocess.Popen(
            cmd["argv"],
            cwd=cmd.get("cwd"),
            env=cmd.get("env"),
            stdin=stdin,
            stdout=out_w,
            stderr=err_w,
            user=cmd.get("uid"),
            group=cmd.get("gid"),
            extra_groups=cmd.get("groups"),
            process_group=0,
            close_fds=True,
        )
    except (OSError, subprocess.SubprocessError) as e:
        error = f"could not start {cmd['argv'][0]!r}: {e}"
        log.write(2, (error + "\n").encode())
    os.close(out_w)
    os.close(err_w)
    if not isinstance(stdin, int):
        stdin.close()

    def forward(sig: int, _frame: object) -> None:
        if child is not None and child.poll() is None:
            child.send_signal(sig)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    if child is not None:
        if not cmd.get("pid_file"):
            write_pidfile(os.path.join(cdir, "pid"), child.pid)
        sel = selectors.DefaultSelector()
        sel.register(out_r, selectors.EVENT_READ, 1)
        sel.register(err_r, selectors.EVENT_READ, 2)
        exited_at = None
        while sel.get_map():
            events = sel.select(timeout=0.2)
            for key, _ in events:
                data = os.read(key.fd, CHUNK)
                if data:
                    log.write(key.data, data)
                else:
                    sel.unregister(key.fd)
            if not events:
                if exited_at is None and child.poll() is not None:
                    exited_at = time.monotonic()
                elif exited_at is not None and time.monotonic() - exited_at > LINGER_SECONDS:
                    break  # something the task started still holds the pipes: stop copying
        rc = child.wait()
    else:
        rc = 127
    os.close(out_r)
    os.close(err_r)
    log.close()

    reason = ""
    if rc < 0:
        reason = f"killed by {_signal_name(-rc)}"
        rc = 128 - rc
    elif cmd.get("signal_exit_codes") and 128 < rc < 128 + 65:
        reason = f"killed by {_signal_name(rc - 128)}"
    if rc != 0 and _oom_killed(cmd.get("oom_cgroup")):
        reason = "OOMKilled"
    pid_file = cmd.get("pid_file")
    if error is None and pid_file and not os.path.exists(pid_file):
        # runc exited before the task process existed: the runtime failed, not the task
        error = _runc_error(cmd.get("runc_log")) or f"{cmd['argv'][0]} exited {rc} before starting the task"
    status = {"code": rc, "reason": reason, "error": error, "finished_at": time.time()}
    write_atomic(os.path.join(cdir, "exit.json"), json.dumps(status).encode())
    if notify_fd is not None:
        os.close(notify_fd)
    return 0


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print("usage: python -m airside.runtime.shim <container-dir> [--notify-fd N]", file=sys.stderr)
        return 2
    notify_fd = int(argv[argv.index("--notify-fd") + 1]) if "--notify-fd" in argv else None
    if os.getsid(0) != os.getpid():
        try:
            os.setsid()
        except OSError:
            pass
    return run(argv[0], notify_fd)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
