"""The model a service worker answers with, and hot promotion: a new ``@champion`` is loaded and swapped in.

:class:`ModelHolder` keeps one :class:`Loaded` (model, its description, its notice, its batcher) and replaces it
as a whole, in one assignment, so a request that took the current one at its start is answered from that model
and names its version, whatever happens meanwhile. While the service follows the registry alias (no
``SURROGATE_MODEL_URI``, no bundled Bento model) a daemon thread asks the registry every ``champion_poll_s``
seconds (:mod:`surrogate.settings`) which version ``@champion`` names; when it moved, the new version is loaded
next to the old one, then swapped in: requests never wait for the load and none fails. ``POST /admin/reload``
runs the same check at once (in the worker that receives it; the other workers follow at their next poll).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from surrogate.errors import InputError

logger = logging.getLogger("surrogate.service")


@dataclass(frozen=True)
class Loaded:
    """One loaded model with everything an answer says about it."""

    model: Any
    info: dict[str, Any]
    notice: str | None
    batcher: Any

    @property
    def version(self) -> str | None:
        """The registry version (``"3"``), or None for a model named by URI or bundled in a Bento."""
        version = self.info.get("version")
        return None if version is None else str(version)


class ModelHolder:
    """Loads the model, retries while there is none, and swaps in a new ``@champion`` (see the module docstring).

    ``load(version)``: the model and its description (``version`` None: whatever the configuration names);
    ``wrap(model, info)``: the :class:`Loaded` to keep; ``champion_version()``: the version ``@champion`` names
    now (None when the service does not follow the alias).
    """

    def __init__(
        self,
        load: Callable[[str | None], tuple[Any, dict[str, Any]]],
        wrap: Callable[[Any, dict[str, Any]], Loaded],
        champion_version: Callable[[], str | None],
    ) -> None:
        self._load_model = load
        self._wrap = wrap
        self._champion_version = champion_version
        self.current: Loaded | None = None
        self.unavailable = ""
        self._lock = threading.Lock()
        self._last_attempt = 0.0
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    # ------------------------------------------------------------ first load, and retries while there is none
    def load(self) -> None:
        """Load the configured model if none is loaded; on failure remember why (the 503 answers say it)."""
        with self._lock:
            if self.current is not None:
                return
            self._last_attempt = time.monotonic()
            try:
                self.current = self._wrap(*self._load_model(None))
                self.unavailable = ""
            except InputError as exc:
                self.unavailable = str(exc)
            except Exception as exc:  # a broken store or model file: the service still answers, with 503
                logger.exception("loading the model failed")
                self.unavailable = f"loading the model failed ({type(exc).__name__}: {exc})"

    def retry(self, every_s: float) -> None:
        """:meth:`load` again when there is no model and ``every_s`` seconds passed since the last attempt."""
        if self.current is None and time.monotonic() - self._last_attempt >= every_s:
            self.load()

    # ------------------------------------------------------------ hot promotion
    def check(self) -> dict[str, Any]:
        """Ask the registry which version ``@champion`` names; load and swap it in when it moved.

        Returns ``{"version", "previous", "changed"}`` (plus ``"following": False`` when the service serves a
        fixed model and never swaps). A failed load keeps the current model and raises.
        """
        with self._lock:
            previous = self.current.version if self.current is not None else None
            wanted = self._champion_version()
            if wanted is None:
                return {"version": previous, "previous": previous, "changed": False, "following": False}
            if wanted == previous:
                return {"version": previous, "previous": previous, "changed": False, "following": True}
            loaded = self._wrap(*self._load_model(wanted))  # the old model keeps answering meanwhile
            self.current = loaded  # one assignment: each request sees the old or the new model, whole
            self.unavailable = ""
        logger.info("champion moved: now version %s (was %s)", loaded.version, previous)
        return {"version": loaded.version, "previous": previous, "changed": True, "following": True}

    def watch(self, every_s: float) -> None:
        """Start the daemon thread that calls :meth:`check` every ``every_s`` seconds (0 or less: never)."""
        if every_s <= 0 or self._watcher is not None:
            return
        self._watcher = threading.Thread(target=self._poll, args=(every_s,), name="champion-watch", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        """Stop the polling thread (tests; a worker's daemon thread ends with it)."""
        self._stop.set()

    def _poll(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            try:
                self.check()
            except InputError as exc:  # no store or no champion yet (nothing trained): expected, one line
                logger.warning("no @champion to check yet (%s); keeping the current model", exc)
            except Exception:  # the registry is down or the new version is broken: keep serving, try again later
                logger.exception("checking the registry for a new @champion failed; keeping the current model")
