"""Running a CNI network configuration list (the CNI spec's plugin chain), with the standard plugins.

`Chain(conflist, plugin_dirs, cache_dir)` runs each plugin of a network configuration list as the spec
says: ADD in list order, each plugin getting the previous one's result as `prevResult`; DEL in reverse
order with the cached result of the ADD. The result of an ADD is cached per container (a JSON file in
`cache_dir`) so that a DEL after a restart of this process still tells the plugins what to remove.

A plugin's failure (non-zero exit; the spec's error object `{code, msg, details}` on stdout) raises
`CNIError` with the plugin's message; a plugin binary that is missing raises it naming the plugin and
the directories searched. DEL is idempotent, as the spec requires of plugins: a second DEL, or a DEL
of a container the plugins never saw, succeeds.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CNI_VERSION = "1.0.0"
PLUGIN_TIMEOUT = 60.0

JSONObject = dict[str, Any]


class CNIError(Exception):
    """A CNI plugin refused or failed; the message says which plugin and why."""


@dataclass(frozen=True)
class Attachment:
    """What an ADD gave a container: its address (CIDR) and gateway on the network, and the raw result."""

    address: str
    gateway: str
    result: JSONObject

    @property
    def ip(self) -> str:
        return self.address.split("/", 1)[0]


def attachment(result: JSONObject) -> Attachment:
    """The container's first IPv4 address of a CNI result (the interface in the sandbox)."""
    for ip in result.get("ips") or []:
        addr = str(ip.get("address", ""))
        if addr and ":" not in addr:
            return Attachment(addr, str(ip.get("gateway", "")), result)
    raise CNIError(f"the CNI result has no IPv4 address: {json.dumps(result)[:300]}")


class Chain:
    """One network configuration list and where its plugins and cached results live."""

    def __init__(self, conflist: JSONObject, plugin_dirs: Sequence[Path], cache_dir: Path) -> None:
        self.conflist = conflist
        self.name = str(conflist["name"])
        self.plugin_dirs = [Path(d) for d in plugin_dirs]
        self.cache_dir = Path(cache_dir)

    # ---- the plugins ------------------------------------------------------------------------------
    def missing_plugins(self) -> list[str]:
        """Plugin types of the list (and their IPAM plugins) found in none of the plugin directories."""
        wanted: list[str] = []
        for p in self.conflist["plugins"]:
            wanted.append(str(p["type"]))
            ipam = p.get("ipam")
            if isinstance(ipam, Mapping) and ipam.get("type"):
                wanted.append(str(ipam["type"]))
        return [t for t in dict.fromkeys(wanted) if self._find(t) is None]

    def _find(self, plugin: str) -> Path | None:
        for d in self.plugin_dirs:
            p = d / plugin
            if p.is_file() and os.access(p, os.X_OK):
                return p
        return None

    # ---- the commands -----------------------------------------------------------------------------
    def add(self, container_id: str, netns: str, ifname: str = "eth0") -> Attachment:
        """ADD: attach the network namespace `netns` (a path) as `ifname`; the result is cached."""
        prev: JSONObject | None = None
        try:
            for plugin in self.conflist["plugins"]:
                prev = self._exec("ADD", plugin, container_id, netns, ifname, prev)
        except CNIError:
            # the spec: a failed ADD is cleaned up by a DEL of the whole list
            self._del_plugins(list(self.conflist["plugins"]), container_id, netns, ifname, prev)
            raise
        assert prev is not None
        self._cache_file(container_id).parent.mkdir(parents=True, exist_ok=True)
        tmp = self._cache_file(container_id).with_suffix(".tmp")
        tmp.write_text(json.dumps({"ifname": ifname, "netns": netns, "result": prev}))
        os.replace(tmp, self._cache_file(container_id))
        return attachment(prev)

    def delete(self, container_id: str, netns: str = "", ifname: str = "eth0") -> None:
        """DEL: detach the container (its cached result tells the plugins what it had); idempotent."""
        cached = self.cached(container_id)
        prev = cached["result"] if cached else None
        errors = self._del_plugins(list(self.conflist["plugins"]), container_id, netns, ifname, prev)
        if errors:
            raise CNIError("; ".join(errors))
        self._cache_file(container_id).unlink(missing_ok=True)

    def forget(self, container_id: str) -> None:
        """Drop the cached result without running the plugins (what they configured is gone with its namespace)."""
        self._cache_file(container_id).unlink(missing_ok=True)

    def cached(self, container_id: str) -> JSONObject | None:
        try:
            data = json.loads(self._cache_file(container_id).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def cached_ids(self) -> list[str]:
        """Container ids with a cached ADD result (attached, or left behind by a crash)."""
        d = self.cache_dir / self.name
        return sorted(p.stem for p in d.glob("*.json")) if d.is_dir() else []

    def _cache_file(self, container_id: str) -> Path:
        return self.cache_dir / self.name / f"{container_id}.json"

    def _del_plugins(
        self, plugins: list[JSONObject], container_id: str, netns: str, ifname: str, prev: JSONObject | None
    ) -> list[str]:
        errors = []
        for plugin in reversed(plugins):
            try:
                self._exec("DEL", plugin, container_id, netns, ifname, prev)
            except CNIError as e:
                errors.append(str(e))
        return errors

    def _exec(
        self, command: str, plugin: JSONObject, container_id: str, netns: str, ifname: str, prev: JSONObject | None
    ) -> JSONObject:
        kind = str(plugin["type"])
        exe = self._find(kind)
        if exe is None:
            raise CNIError(
                f"CNI plugin {kind!r} not found in {', '.join(map(str, self.plugin_dirs))} "
                "(install Debian's containernetworking-plugins)"
            )
        conf: JSONObject = {"cniVersion": self.conflist.get("cniVersion", CNI_VERSION), "name": self.name, **plugin}
        if prev is not None:
            conf["prevResult"] = prev
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": netns,
            "CNI_IFNAME": ifname,
            "CNI_PATH": os.pathsep.join(map(str, self.plugin_dirs)),
        }
        try:
            r = subprocess.run(
                [str(exe)], input=json.dumps(conf), capture_output=True, text=True, env=env, timeout=PLUGIN_TIMEOUT
            )
        except subprocess.TimeoutExpired:
            raise CNIError(f"CNI plugin {kind!r} ({command}) did not answer in {PLUGIN_TIMEOUT:.0f} s") from None
        if r.returncode != 0:
            raise CNIError(f"CNI plugin {kind!r} ({command}) failed: {_error_message(r.stdout, r.stderr)}")
        if command != "ADD":
            return prev or {}
        try:
            out = json.loads(r.stdout)
        except ValueError:
            raise CNIError(f"CNI plugin {kind!r} (ADD) printed no JSON result: {r.stdout[:200]!r}") from None
        if not isinstance(out, dict):
            raise CNIError(f"CNI plugin {kind!r} (ADD) printed {type(out).__name__}, not a result object")
        return out


def _error_message(stdout: str, stderr: str) -> str:
    try:
        err = json.loads(stdout)
    except ValueError:
        err = None
    if isinstance(err, dict) and err.get("msg"):
        details = f" ({err['details']})" if err.get("details") else ""
        return f"{err['msg']}{details}"
    tail = (stderr or stdout).strip().splitlines()[-3:]
    return " / ".join(tail) or "no message"
