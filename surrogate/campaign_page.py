"""The campaign view a scientist reads: one small HTML page per campaign, served by ``surrogate dashboard``.

It shows what :meth:`surrogate.campaign.Campaign.status` says, in physical units: the objective with its unit and
conditions, the recommended design (the model's best posterior mean) with its 90% interval, the best reading so far,
the warm start (labelled as a reconstruction from the paper when it is the embedded data set), and the pending
suggestions as pending (not measured yet). optuna-dashboard, served beside it at ``/dashboard``, shows the raw
trials, where a pending suggestion appears as "Running".

Routes: ``/`` and ``/campaigns`` list the campaigns of the storage; ``/campaigns/<name>`` is one campaign's page.
The pages only read the storage; they load nothing from other hosts and run no script.
"""

from __future__ import annotations

from typing import Any

import jinja2
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from surrogate.parameters import ANNEAL_TEMP_C, C_RATE, CYCLES, NUMERIC_PARAMETERS, TEST_TEMP_C

PAPER = "Tan et al., Nanomaterials 2021, 11, 989"
RECONSTRUCTION_NOTE = (
    f"The embedded data set is a reconstruction from a paper ({PAPER}), made by a paper-calibrated virtual lab: "
    "it is not measurements."
)
"""Said on every page where the embedded data set appears (a campaign warm-started from it)."""

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; color: #222; line-height: 1.4; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; } th, td { padding: 0.25rem 0.8rem; border-bottom: 1px solid #eee; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
.notice { background: #fff4d6; border-left: 4px solid #e0a800; padding: 0.6rem 1rem; }
.extrapolation { color: #a33; } .pending { color: #555; font-style: italic; } .muted { color: #666; }
"""

_BASE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title><style>{{ style }}</style></head>
<body>{% block body %}{% endblock %}
<p class="muted">The raw trials are in <a href="/dashboard">optuna-dashboard</a> (there a pending suggestion shows as
"Running").</p></body></html>"""

_LIST = """{% extends "base" %}{% block body %}
<h1>Campaigns</h1>
{% if campaigns %}<table><tr><th>campaign</th><th>objective</th><th>trials</th><th>created (UTC)</th></tr>
{% for c in campaigns %}<tr><td><a href="/campaigns/{{ c.name }}">{{ c.name }}</a></td><td>{{ c.objective }}</td>
<td class="number">{{ c.trials }}</td><td>{{ c.created }}</td></tr>
{% endfor %}</table>{% else %}<p>No campaign yet: <code>surrogate campaign create NAME --objective K</code>.</p>{% endif %}
{% endblock %}"""

_CAMPAIGN = """{% extends "base" %}{% block body %}
<p><a href="/campaigns">All campaigns</a></p>
<h1>Campaign {{ s.campaign }}</h1>
<p id="objective">Maximise <b>{{ objective.label }}</b>: {{ objective.conditions }}.
Unit of the objective: <b>{{ objective.unit }}</b>.</p>

<section id="warm-start"><h2>Warm start</h2>
{% if s.warm_start_rows %}<p>{{ s.warm_start_rows }} rows from {{ s.warm_start_source }} (not counted as observations).</p>
{% if embedded %}<p class="notice" id="reconstruction">{{ reconstruction_note }}</p>{% endif %}
{% else %}<p>None: the campaign starts from the physics prior and its own observations.</p>{% endif %}
</section>

<section id="recommended"><h2>Recommended design</h2>
{% set r = s.recommended %}
<p>The design the campaign's model believes best (the highest posterior mean of the objective), fitted on
{{ r.observations }} observation(s) at the objective's conditions.</p>
<table>{% for row in recommended_rows %}<tr><th>{{ row[0] }}</th><td>{{ row[1] }}</td></tr>{% endfor %}
<tr><th>expected objective</th><td>{{ fmt(r.mean) }} {{ objective.unit }}</td></tr>
<tr><th>{{ "%.0f"|format(r.level * 100) }}% interval</th>
<td id="interval">{{ fmt(r.lower) }} to {{ fmt(r.upper) }} {{ objective.unit }}</td></tr></table>
{% if r.extrapolation %}<p class="extrapolation">Extrapolation: {{ r.extrapolation_reasons|join("; ") }}.</p>{% endif %}
</section>

<section id="best"><h2>Best reading so far</h2>
{% if s.best %}<p>Trial {{ s.best.trial }}: {{ design_text(s.best) }}: {{ fmt(s.best.objective) }} {{ objective.unit }}
(one noisy reading; the recommended design above is the better bet when they differ).</p>
{% else %}<p>No observation yet.</p>{% endif %}
<p>Observed {{ s.observed }}, failed {{ s.failed }}, expired (returned to the pool unanswered) {{ s.expired }}.</p>
</section>

<section id="pending"><h2>Pending suggestions: not measured yet</h2>
{% if s.pending_suggestions %}<table><tr><th>trial</th><th>state</th><th>design</th><th>client</th>
<th>lease until (UTC)</th></tr>
{% for p in s.pending_suggestions %}<tr><td class="number">{{ p.trial }}</td><td class="pending">pending</td>
<td>{{ design_text(p) }}</td><td>{{ p.client_id or "" }}</td><td>{{ p.lease_expires_at or "" }}</td></tr>
{% endfor %}</table>{% else %}<p>None.</p>{% endif %}
</section>
{% endblock %}"""

_TEMPLATES = jinja2.Environment(
    loader=jinja2.DictLoader({"base": _BASE, "list": _LIST, "campaign": _CAMPAIGN}),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def _fmt(value: float) -> str:
    """A number with 4 significant digits (as ``campaign status`` prints it)."""
    return f"{value:.4g}"


def _with_unit(name: str, value: Any) -> str:
    parameter = NUMERIC_PARAMETERS[name]
    if parameter.kind == "int":
        return f"{int(value)} {parameter.unit}"
    return f"{round(float(value), 1):g} {parameter.unit}"  # 0.1 °C and 0.1 C are finer than any lab sets


def design_text(design: dict[str, Any]) -> str:
    """A design in one line with its units, e.g. ``sio2, anneal 300 °C, test 60 °C``."""
    return f"{design['buffer']}, anneal {_with_unit(ANNEAL_TEMP_C, design[ANNEAL_TEMP_C])}, " + (
        f"test {_with_unit(TEST_TEMP_C, design[TEST_TEMP_C])}"
    )


def _objective_view(status: dict[str, Any]) -> dict[str, str]:
    objective = status["objective"]
    conditions = f"at {_with_unit(C_RATE, objective[C_RATE])} and after {_with_unit(CYCLES, objective[CYCLES])}"
    conditions += f" ({objective['protocol']} protocol)"
    if objective.get("test_temp_c") is not None:
        conditions += f", tested at {_with_unit(TEST_TEMP_C, objective['test_temp_c'])}"
    return {
        "label": f"{objective['name']} (kind {objective['kind']})",
        "conditions": conditions,
        "unit": objective["unit"],
    }


def campaign_html(status: dict[str, Any]) -> str:
    """The page of one campaign from its :meth:`~surrogate.campaign.Campaign.status` (with a recommendation)."""
    design = status["recommended"]["design"]
    rows = [
        ("buffer", design["buffer"]),
        ("anneal temperature", _with_unit(ANNEAL_TEMP_C, design[ANNEAL_TEMP_C])),
        ("test temperature", _with_unit(TEST_TEMP_C, design[TEST_TEMP_C])),
        ("C-rate", _with_unit(C_RATE, design[C_RATE])),
        ("cycles", _with_unit(CYCLES, design[CYCLES])),
    ]
    source = status.get("warm_start_source") or ""
    return _TEMPLATES.get_template("campaign").render(
        title=f"Campaign {status['campaign']}",
        style=_STYLE,
        s=status,
        objective=_objective_view(status),
        recommended_rows=rows,
        embedded=source.startswith("embedded"),
        reconstruction_note=RECONSTRUCTION_NOTE,
        fmt=_fmt,
        design_text=design_text,
    )


def campaigns_html(campaigns: list[dict[str, Any]]) -> str:
    """The list page from :func:`surrogate.campaign.list_campaigns`."""
    return _TEMPLATES.get_template("list").render(title="Campaigns", style=_STYLE, campaigns=campaigns)


class CampaignPages:
    """A WSGI application serving the campaign pages of one Optuna storage (read only)."""

    def __init__(self, storage: Any) -> None:
        self.storage = storage
        self.urls = Map(
            [
                Rule("/", endpoint="index"),
                Rule("/campaigns", endpoint="campaigns"),
                Rule("/campaigns/<name>", endpoint="campaign"),
            ]
        )

    def _answer(self, request: Request) -> Response:
        from surrogate.campaign import Campaign, list_campaigns
        from surrogate.errors import InputError, NotFoundError

        endpoint, values = self.urls.bind_to_environ(request.environ).match()
        if endpoint == "index":
            return redirect("/campaigns")
        if endpoint == "campaigns":
            return Response(campaigns_html(list_campaigns(self.storage)), content_type="text/html; charset=utf-8")
        try:
            status = Campaign.load(values["name"], self.storage).status()
        except (NotFoundError, InputError) as exc:
            raise NotFound(str(exc)) from None
        return Response(campaign_html(status), content_type="text/html; charset=utf-8")

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        try:
            response = self._answer(request)
        except HTTPException as exc:
            response = exc.get_response(environ)
        return response(environ, start_response)
