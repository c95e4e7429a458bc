"""Where a task's files live inside its container: the one layout every runtime and the task config share.

A task's inputs, outputs and caches are mounted under the work dir (`DEFAULT_WORK_DIR`, unless a caller
passes another), and its working directory is the work dir or `run.dir` resolved against it
(`airside.task.TaskConfig.input_paths` and friends compute the paths; the runtimes only mount them).
"""

from __future__ import annotations

from pathlib import PurePosixPath

__all__ = ["DEFAULT_WORK_DIR"]

DEFAULT_WORK_DIR = PurePosixPath("/tmp/build/work")
