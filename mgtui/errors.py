"""Exit codes and the user-input error, shared by the CLI, the app, the launcher and the engine.
A leaf module: it imports nothing from mgtui, so anything may import it.

Exit codes: 0 done, 1 the run failed, 2 bad input (flags, preset, dataset, device), 130 stopped.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2  # bad input: one line on stderr naming the field, file or line
EXIT_STOPPED = 130  # 128 + SIGINT, as a shell reports a Ctrl+C

# What a finished run's state means as an exit code.
EXIT_FOR_STATE = {"done": EXIT_OK, "stopped": EXIT_STOPPED, "failed": EXIT_FAILED}


class UsageError(Exception):
    """Bad input from the user: one line, exit 2."""


def how_it_ended(code: int) -> str:
    """A process's return code as words: "signal SIGKILL" (a negative code) or "exit status 3"."""
    import signal

    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit status {code}"
