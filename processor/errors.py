"""Every error the package raises: one base class, one-line messages naming the file/key and the fix."""

from __future__ import annotations

from abc import ABCMeta

from cluster.errors import ClusterError


class BumpnetError(Exception, metaclass=ABCMeta):
    """Base of every error this package raises on purpose.

    The message is one line that names the file or key at fault and says how to fix it;
    ``runner.py`` prints it as is and maps the class to an exit code (``processor.run.cli``).
    """


class ConfigError(BumpnetError, ValueError):
    """A configuration file or value is wrong; the message names the key and the fix."""


class FormatError(BumpnetError, ValueError):
    """A file does not match the expected ATLAS Open Data format (tree, branches, units)."""


class DataAccessError(BumpnetError, RuntimeError):
    """Release metadata, a download or a remote file cannot be reached or is inconsistent."""


class InputError(BumpnetError, RuntimeError):
    """An input file cannot be used and skipbadfiles is off (one line, names the file)."""


class ChunkError(BumpnetError, RuntimeError):
    """A chunk could not be processed; the message names the file and entry range."""


class PlotsError(BumpnetError, RuntimeError):
    """A run directory lacks what the plots need (names the file)."""


class RunDirError(BumpnetError, RuntimeError):
    """A run directory cannot be used as asked (names the directory and the fix)."""


class MergeError(ConfigError):
    """Runs that must not be added: other physics settings, or the same inputs twice."""


class RunDirLockedError(RunDirError):
    """Another run holds the lock on the run directory (names it and who holds it)."""


class StorageError(BumpnetError, RuntimeError):
    """A checkpoint or output write failed (disk full, read-only, quota): never an input failure.

    Deliberately not an ``OSError``: coffea's ``skipbadfiles=(OSError,)`` must not swallow it.
    """


class StallError(BumpnetError, RuntimeError):
    """No task finished for executor.stall_timeout_s while workers were paused or missing, or
    a worker was killed (memory) every time it ran one chunk."""


class RunInterrupted(KeyboardInterrupt):
    """The run was stopped by SIGTERM (batch walltime) or SIGINT; checkpoints are kept."""

    def __init__(self, signame: str = "SIGINT") -> None:
        super().__init__(signame)
        self.signame = signame
        #: the run directory to pass to ``--resume`` (set by the runner once known)
        self.run_dir: str | None = None


# cluster/ stays independent of processor/ (it has its own base, ClusterError); errors from it
# count as ours wherever the runner checks ``isinstance(exc, BumpnetError)``.
BumpnetError.register(ClusterError)

__all__ = [
    "BumpnetError",
    "ChunkError",
    "ClusterError",
    "ConfigError",
    "DataAccessError",
    "FormatError",
    "InputError",
    "MergeError",
    "PlotsError",
    "RunDirError",
    "RunDirLockedError",
    "RunInterrupted",
    "StallError",
    "StorageError",
]
