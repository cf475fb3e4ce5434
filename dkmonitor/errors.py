"""Exceptions that map to dkmonitor's exit codes.

Library code raises these with a message that names the thing that is wrong
(file, key, task, path) and how to fix it; the CLI turns them into one line on
stderr and the matching exit status. Nothing else should reach the user as a
traceback.
"""


class DkmError(Exception):
    """Usage or configuration error: exit status 2."""

    exit_code = 2


class ConfigError(DkmError):
    """settings.cfg is unreadable or holds a bad value."""


class TaskError(DkmError):
    """A task definition is invalid, or a task name is unknown."""


class DatabaseUnavailable(Exception):
    """The database could not be reached (the run spools instead)."""
