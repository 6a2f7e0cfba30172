"""Bounded labels for ``/metrics``: route templates instead of raw request paths (issue 18, finding 1).

BentoML 1.4's traffic-metrics middleware labels every request with its raw path (``endpoint="/campaigns/secret"``,
``endpoint="/no/such/path/123"``), so any client can grow the number of series without bound and ``/metrics``
shows campaign names. The service's ``__metrics__`` hook (BentoML's documented way to edit the exposition text)
passes the text through :func:`bounded_metrics_text`, which maps each ``endpoint`` label to its route template
(:func:`route_template`) and adds up the samples that then share one name and label set.

Limit, stated plainly: this bounds and cleans what ``/metrics`` *shows*; BentoML's registry in each worker still
keeps one entry per raw path it has seen (the middleware that makes them sits outside every user middleware).
"""

from __future__ import annotations

import re

KNOWN_ROUTES: frozenset[str] = frozenset(
    {
        "/",
        "/docs.json",
        "/predict",
        "/model_info",
        "/suggest",
        "/observe",
        "/campaigns",
        "/search",
        "/healthz",
        "/livez",
        "/readyz",
        "/metrics",
    }
)
"""The service's fixed routes, which label themselves."""
CAMPAIGN_ROUTE = "/campaigns/{name}"
OTHER_ROUTE = "other"
"""The one label every path outside the service's routes shares."""

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)(?P<rest>.*)$")
_LABEL = re.compile(r'(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<value>(?:[^"\\]|\\.)*)"')


def route_template(path: str) -> str:
    """The route template a raw request path belongs to: itself, ``/campaigns/{name}`` or ``other``."""
    if path in KNOWN_ROUTES:
        return path
    if path.startswith("/campaigns/") and "/" not in path[len("/campaigns/") :]:
        return CAMPAIGN_ROUTE
    return OTHER_ROUTE


def bounded_metrics_text(text: str) -> str:
    """Prometheus exposition ``text`` with every ``endpoint`` label replaced by its route template.

    Samples that come to share a name and label set are merged: added up, except ``*_timestamp`` gauges,
    which keep the latest (largest) value. Comment lines (``# HELP``, ``# TYPE``) are kept in place.
    """
    out: list[str | None] = []
    merged: dict[tuple[str, str], float] = {}
    line_of: dict[tuple[str, str], int] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line) if line and not line.startswith("#") else None
        if match is None or match["labels"] is None or "endpoint=" not in match["labels"]:
            out.append(line)
            continue
        labels = [(m["key"], m["value"]) for m in _LABEL.finditer(match["labels"])]
        labels = [(k, route_template(v) if k == "endpoint" else v) for k, v in labels]
        label_text = ",".join(f'{k}="{v}"' for k, v in labels)
        key = (match["name"], label_text)
        value = float(match["value"])
        if key in merged:
            previous = merged[key]
            merged[key] = max(previous, value) if match["name"].endswith("_timestamp") else previous + value
            continue
        merged[key] = value
        line_of[key] = len(out)
        out.append(None)
    for (name, label_text), index in line_of.items():
        out[index] = f"{name}{{{label_text}}} {merged[(name, label_text)]!r}"
    return "\n".join(line for line in out if line is not None) + "\n"
