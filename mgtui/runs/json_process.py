"""A process that speaks JSON lines on stdout: started beside the app, its lines read in a thread
into a queue that a screen drains on a timer. The chat's and the export's processes are two."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from pathlib import Path
from typing import Any


class JsonLinesProcess:
    def __init__(self) -> None:
        self.events: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self.proc: subprocess.Popen[str] | None = None

    def spawn(self, cmd: list[str], log: Path, stdin: int) -> None:
        """Its stderr goes to `log`; {"type": "exit", "code"} follows its last line."""
        with log.open("ab") as err:
            self.proc = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=err, text=True, bufsize=1)
        threading.Thread(target=self._read, name="json-lines-reader", daemon=True).start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                continue
        self.events.put({"type": "exit", "code": self.proc.wait()})

    def drain(self) -> list[dict[str, Any]]:
        out = []
        while True:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                return out

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None
