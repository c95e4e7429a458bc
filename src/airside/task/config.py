"""The Concourse task config schema, validated with pydantic v2.

``load_task_config(text, filename)`` parses a task file (YAML) and returns a
:class:`TaskConfig`; every problem found is reported in one :class:`TaskConfigError`,
one line per problem, as ``task.yml:12: run.path: field required (expected a string)``.

Compatibility notes (what airside does, and where it differs from Concourse)
---------------------------------------------------------------------------

*Params → environment.*  ``params`` values may be strings, numbers, booleans, null,
maps or lists, as in Concourse.  :meth:`TaskConfig.params_env` turns them into env
strings the way Concourse's ``TaskEnv``/``CoercedString`` does: ``null`` → ``""``;
strings unchanged; numbers in Go's JSON spelling (``1``, ``1.5``, ``1e+21``; an integral
float such as ``2.0`` becomes ``2``); booleans ``true``/``false`` (YAML 1.1 ``yes``/``on``
are booleans too); maps and lists compact JSON with sorted keys and Go's HTML escaping
of ``<``, ``>`` and ``&``.  Unquoted dates stay strings (as with Go's YAML), NaN/Inf are
rejected, and a key must be non-empty and free of ``=`` and NUL.

*Path layout.*  Concourse runs a task in ``/tmp/build/<random>``; inputs, outputs and
caches are directories relative to that working directory.  Airside uses the fixed
work dir :data:`DEFAULT_WORK_DIR` (``/tmp/build/work``), overridable per call.  Each
input/output is placed at ``<work dir>/<path>`` where ``path`` defaults to the name;
caches at ``<work dir>/<path>``; an absolute path is used as is and ``.`` is the work dir itself (issue 16).  ``run.dir`` (relative) is resolved against the work
dir and is the process's cwd; ``run.path`` is then looked up as Concourse does (an
executable relative to that cwd if it contains a slash, else via ``$PATH``; the runtime
does that).  Artifact and cache paths may be relative, absolute
(``/var/vcap/packages/x``, used as is) or ``.`` (the work dir itself); ``..`` is refused
(Concourse silently strips ``../``) and so is ``/``.  ``./a/`` is normalised to ``a``.

*Overlaps.*  Like Concourse ≥ 5, paths may nest (a cache ``src/node_modules`` inside
input ``src``), and an output may share its exact path with an input: the output then
starts as a copy-on-write of that input (:meth:`TaskConfig.outputs_sharing_inputs`).
Two inputs, two outputs, or a cache and an artifact at the same path are errors, as are
duplicate output names; a duplicate input name is a warning (Concourse accepts it).

*Names* follow Concourse's identifier charset: letters (any case — Concourse only warns
about upper case), digits, ``-``, ``_`` and ``.``, starting with a letter or digit.

*Image.*  ``image_resource.type`` may be any resource type; for ``registry-image`` and
``docker-image`` (the only ones fetched) the source needs ``repository`` (a string) and may
give ``tag`` (a string, default ``latest``).
A config may have neither ``image_resource`` nor ``rootfs_uri`` (the step may supply
``image:``); the runner calls :meth:`TaskConfig.require_image` to get a clear error when
nothing supplies one.  If both are present, ``image_resource`` wins (as in Concourse).

*container_limits.memory* is bytes: an integer, or a string ``<digits>[K|M|G][i][B]``
(case-insensitive, binary units: ``1GB`` = ``1G`` = ``1GiB`` = 2**30; ``512`` and
``512B`` are bytes), the union of what Concourse's releases accept.  ``cpu`` is an
integer number of shares.  ``0`` means unlimited for both.

Unknown keys are errors at every level, as are duplicate YAML keys.  ``run`` and ``run.path``
may be omitted (Concourse 8): the image's ENTRYPOINT/CMD runs (`TaskConfig.command`).  Duplicate
input names are warnings (`TaskConfig.warnings`), any ``image_resource.type`` parses (see
`ImageResource.unsupported`), and ``image_resource.name``/``tags`` and ``caches[].ttl`` are known.

Layout
------

This module is the package's front: it states the compatibility rules above and re-exports the
public names.  The code lives in one module per concern:

- :mod:`airside.task.errors` — `TaskConfigError`, `TaskConfigProblem` (``file:line: field: message``);
- :mod:`airside.task.lines` — YAML → Python with the line of every value and key;
- :mod:`airside.task.values` — value rules: names, paths (via :mod:`airside.core.paths`), memory,
  cpu, params;
- :mod:`airside.task.params` — params → environment strings;
- :mod:`airside.task.models` — the pydantic schema, `TaskConfig` and its parts;
- :mod:`airside.task.loader` — `load_task_config` / `parse_task_config`: validation and messages.
"""

from __future__ import annotations

from airside.core.layout import DEFAULT_WORK_DIR

from .errors import TaskConfigError, TaskConfigProblem
from .loader import load_task_config, parse_task_config
from .models import (
    IMAGE_TYPES,
    ContainerLimits,
    ImageResource,
    TaskCache,
    TaskConfig,
    TaskInput,
    TaskOutput,
    TaskRun,
)
from .params import param_to_env
from .values import parse_memory

__all__ = [
    "DEFAULT_WORK_DIR",
    "IMAGE_TYPES",
    "ContainerLimits",
    "ImageResource",
    "TaskCache",
    "TaskConfig",
    "TaskConfigError",
    "TaskConfigProblem",
    "TaskInput",
    "TaskOutput",
    "TaskRun",
    "load_task_config",
    "param_to_env",
    "parse_memory",
    "parse_task_config",
]
