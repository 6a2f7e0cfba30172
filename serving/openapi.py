"""The service's OpenAPI 3.0 document and its Swagger UI page: the project's own, not BentoML's boilerplate.

BentoML 1.4 writes the document from the API signatures: that part (request and response schemas) is kept.
:func:`openapi_document` then

- replaces BentoML's title, "None" version, contact and README (Slack/Twitter badges) with the project's;
- writes every schema in the OpenAPI 3.0 dialect that Swagger UI reads: one ``example`` (pydantic writes the
  JSON Schema 2020-12 ``examples`` list, which Swagger UI ignores on 3.0), ``nullable`` (and ``default: null`` for an optional field) instead of
  ``anyOf [.., {"type": "null"}]``, boolean ``exclusiveMinimum``;
- documents the answers each endpoint can give (400/401/404/409/413/415/500/503, one error schema) and the
  bearer token (``components.securitySchemes``; Swagger UI shows an Authorize button);
- adds the GET routes BentoML APIs cannot express (``/model_info``, ``/campaigns``, ``/campaigns/{name}``).

:func:`swagger_ui_html` is the page at ``/``: Swagger UI from the assets BentoML ships (served by the service
under ``/static_content``), no tag manager, no validator badge, no request to any other host.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from typing import Any

from serving.middleware import is_protected
from serving.schemas import CampaignList, CampaignStatus, ErrorResponse, ModelInfo

TITLE = "LLTO surrogate service"
DESCRIPTION = """\
Predictions with intervals, design-of-experiments campaigns and search for sputtered Li0.33La0.55TiO3 (LLTO)
thin-film all-solid-state batteries.

- **Units**: temperatures in °C, conductivity in S/cm, retentions as fractions (0-1), `c_rate` in C.
- **Data**: a model trained on the embedded data set answers with a `notice`: that data set is a reconstruction
  from Tan et al., *Nanomaterials* 2021, 11, 989, **not measurements**. Every prediction outside the training
  data is marked `extrapolation: true`, with the reason.
- **Token**: when the service runs with `SURROGATE_API_TOKEN`, the campaign and search endpoints need
  `Authorization: Bearer <token>` (the padlocks; use **Authorize**). Predictions and model information are open.
- **Errors**: every answer of 400 or more is `{"error": "...", "detail": [...]}` naming the field or row.
- **Input**: JSON bodies only (`Content-Type: application/json`); numbers must be JSON numbers (no `true`, no
  `"300"`); unknown keys are refused.

The reference of every endpoint, with examples, is `docs/service.md` in the project.
"""

BEARER = "bearerAuth"
ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
_ERROR_TEXT = {
    "400": "Bad input: the `detail` list names each field (`loc`, `msg`) or data row (`row`, `column`, `reason`)",
    "401": "The bearer token is missing or wrong (only when the service runs with SURROGATE_API_TOKEN)",
    "404": "No campaign of that name",
    "409": "Conflicts with recorded state (the campaign exists; another result for an answered trial: `trial`)",
    "413": "The body is larger than SURROGATE_MAX_BODY_BYTES, or more than 10,000 designs or rows",
    "408": "The body did not arrive within the body deadline (shorter than its Content-Length, or stalled)",
    "415": "The body is not JSON: send `Content-Type: application/json` (`multipart/form-data` on /ingest)",
    "500": "Unexpected error: logged by the service with the `request_id` of the answer",
    "503": "No trained model yet: run `surrogate train`",
}
_MODEL_PATHS = frozenset({"/predict", "/model_info", "/search"})
_NAMED_CAMPAIGN_PATHS = frozenset({"/suggest", "/observe", "/campaigns/{name}"})
"""Endpoints that name an existing campaign (404 when there is none)."""
_CONFLICT_PATHS = frozenset({"/observe", "/campaigns"})
_SUMMARIES = {
    "/predict": "Predict every target, with intervals and extrapolation flags",
    "/model_info": "Which model answers",
    "/suggest": "Hand out the next designs to measure",
    "/observe": "Record measured results",
    "/search": "Search the surrogate for the best designs or the Pareto set",
    "/campaigns": "Create a campaign",
    "/ingest": "Reduce uploaded raw instrument files to rows",
}
_BENTOML_COMPONENTS = ("InvalidArgument", "NotFound", "InternalServerError", "TaskStatusResponse")
_INFRA = {
    "/healthz": "200 while the worker runs",
    "/livez": "200 while the worker runs",
    "/readyz": "200 once a model is loaded; 503 before (the service answers predictions only then)",
    "/metrics": "Prometheus metrics",
}


_PATH_ORDER = (
    "/predict",
    "/model_info",
    "/search",
    "/campaigns",
    "/campaigns/{name}",
    "/suggest",
    "/observe",
    "/ingest",
)
"""The order Swagger UI lists the endpoints in: predictions first, then campaigns in the order they are used."""


def _path_rank(path: str) -> tuple[int, str]:
    return (_PATH_ORDER.index(path) if path in _PATH_ORDER else len(_PATH_ORDER), path)


# ------------------------------------------------------------------ OpenAPI 3.0 dialect
def openapi30(node: Any) -> Any:
    """A JSON Schema tree (pydantic's 2020-12 dialect) rewritten in the OpenAPI 3.0 dialect Swagger UI reads."""
    if isinstance(node, list):
        return [openapi30(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: openapi30(value) for key, value in node.items()}
    examples = out.pop("examples", None)
    if isinstance(examples, list) and examples and "example" not in out:
        out["example"] = examples[0]
    if "const" in out:
        out["enum"] = [out.pop("const")]
    for exclusive, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(exclusive), int | float) and not isinstance(out.get(exclusive), bool):
            out[inclusive] = out.pop(exclusive)
            out[exclusive] = True
    any_of = out.get("anyOf")
    if isinstance(any_of, list) and any(option == {"type": "null"} for option in any_of):
        rest = [option for option in any_of if option != {"type": "null"}]
        del out["anyOf"]
        if len(rest) == 1:
            single = rest[0]
            if "$ref" in single:  # siblings of $ref are ignored in 3.0: wrap it
                out["allOf"] = [single]
            else:
                out = {**single, **out}
        else:
            out["anyOf"] = rest
        out["nullable"] = True  # a ``default: null`` stays: 3.0 allows it with nullable, and Swagger UI shows it
    return out


def _rename_io_descriptors(document: dict[str, Any]) -> dict[str, Any]:
    """BentoML names a request model ``XIODescriptor``; the document shows ``X``."""
    return json.loads(json.dumps(document).replace("IODescriptor", ""))


def _schema_components(*models: Any) -> dict[str, Any]:
    components: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(schema.pop("$defs", {}))
        components[model.__name__] = schema
    return components


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


_GET_INPUT_PATHS = frozenset({"/campaigns/{name}"})
"""GET routes with input of their own (a path parameter), so a 400: a name that is not a campaign name."""


def _responses(path: str, method: str, ok: dict[str, Any]) -> dict[str, Any]:
    codes = ["400"] if method == "post" or path in _GET_INPUT_PATHS else []
    if is_protected(path):
        codes.append("401")
    if path in _NAMED_CAMPAIGN_PATHS:
        codes.append("404")
    if method == "post" and path in _CONFLICT_PATHS:
        codes.append("409")
    if method == "post":
        codes += ["408", "413", "415"]
    codes.append("500")
    if path in _MODEL_PATHS:
        codes.append("503")
    responses = dict(ok)
    for code in codes:
        responses[code] = {"description": _ERROR_TEXT[code], "content": _json_content(ERROR_REF)}
    return responses


def _get_operation(path: str, summary: str, description: str, schema_name: str, parameters: list | None = None) -> dict:
    operation: dict[str, Any] = {
        "tags": ["Service APIs"],
        "summary": summary,
        "description": description,
        "operationId": f"get{path.replace('/', '_').replace('{', '').replace('}', '')}",
        "responses": _responses(
            path,
            "get",
            {"200": {"description": "OK", "content": _json_content({"$ref": f"#/components/schemas/{schema_name}"})}},
        ),
    }
    if parameters:
        operation["parameters"] = parameters
    if is_protected(path):
        operation["security"] = [{BEARER: []}]
    return operation


def _ingest_operation() -> dict[str, Any]:
    """``POST /ingest`` (a Starlette route, :mod:`serving.upload`): a multipart form of a manifest and its files."""
    from surrogate.settings import get_settings

    settings = get_settings()
    form = {
        "type": "object",
        "required": ["manifest"],
        "properties": {
            "manifest": {
                "type": "string",
                "format": "binary",
                "description": "the manifest: a .yaml, .yml or .csv file whose `file` entries name the uploaded files",
            },
            "files": {
                "type": "array",
                "items": {"type": "string", "format": "binary"},
                "maxItems": settings.ingest_max_files,
                "description": (
                    f"the raw files (at most {settings.ingest_max_files}, {settings.ingest_max_file_bytes} bytes "
                    f"each, {settings.ingest_max_total_bytes} in all); each file name is a relative path the "
                    "manifest names, without '..'"
                ),
            },
        },
    }
    answer = {
        "type": "object",
        "required": ["rows", "sources", "warnings"],
        "properties": {
            "rows": {
                "type": "array",
                "items": {"type": "object"},
                "description": "the reduced rows, provenance included",
            },
            "sources": {"type": "array", "items": {"type": "object"}, "description": "name, sha256, format per file"},
            "warnings": {"type": "array", "items": {"type": "string"}},
            "created_at": {"type": "string", "nullable": True},
            "tracked": {"type": "boolean", "description": "always false: nothing is kept, no MLflow run"},
        },
    }
    return {
        "tags": ["Service APIs"],
        "summary": _SUMMARIES["/ingest"],
        "description": "As `surrogate data ingest`, over HTTP: the answer is the rows, their sources and warnings.",
        "operationId": "ingest",
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": form}}},
        "responses": _responses("/ingest", "post", {"200": {"description": "OK", "content": _json_content(answer)}}),
        "security": [{BEARER: []}],
    }


def openapi_document(service: Any) -> dict[str, Any]:
    """The OpenAPI 3.0 document of ``service`` (see the module docstring); computed once per process."""
    return copy.deepcopy(_document(service))


@lru_cache(maxsize=4)
def _document(service: Any) -> dict[str, Any]:
    from surrogate import __version__

    document = _rename_io_descriptors(service.openapi_spec.asdict())
    document["info"] = {"title": TITLE, "version": __version__, "description": DESCRIPTION}
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in _BENTOML_COMPONENTS:
        schemas.pop(name, None)
    schemas.update(_schema_components(ErrorResponse, ModelInfo, CampaignStatus, CampaignList))
    components["securitySchemes"] = {
        BEARER: {
            "type": "http",
            "scheme": "bearer",
            "description": "the service's SURROGATE_API_TOKEN (only needed when the service runs with one)",
        }
    }
    paths: dict[str, Any] = {}
    for path, item in document["paths"].items():
        if path in _INFRA:
            responses = {"200": {"description": "OK"}}
            if path == "/readyz":
                responses["503"] = {"description": "no model loaded yet", "content": _json_content(ERROR_REF)}
            paths[path] = {"get": {"tags": ["Infrastructure"], "description": _INFRA[path], "responses": responses}}
            continue
        operation = item.get("post")
        if operation is None:
            continue
        ok = operation["responses"].get("200") or operation["responses"].get(200)
        if path == "/campaigns":
            ok = {
                "201": {
                    "description": "Created: the new campaign's status",
                    **{k: v for k, v in ok.items() if k != "description"},
                }
            }
        else:
            ok = {"200": ok}
        operation["responses"] = _responses(path, "post", ok)
        operation["summary"] = _SUMMARIES.get(path, "")
        if is_protected(path):
            operation["security"] = [{BEARER: []}]
        paths[path] = {"post": operation}
    paths["/model_info"]["get"] = _get_operation(
        "/model_info", _SUMMARIES["/model_info"], "The same answer as POST /model_info.", "ModelInfo"
    )
    paths["/campaigns"]["get"] = _get_operation(
        "/campaigns", "List the campaigns", "Every campaign: name, objective, creation time, trials.", "CampaignList"
    )
    paths["/campaigns/{name}"] = {
        "get": _get_operation(
            "/campaigns/{name}",
            "A campaign's status",
            "Counts, best observation so far, pending suggestions (as `surrogate campaign status`).",
            "CampaignStatus",
            [{"name": "name", "in": "path", "required": True, "schema": {"type": "string", "example": "films"}}],
        )
    }
    paths["/ingest"] = {"post": _ingest_operation()}
    paths["/metrics"] = {"get": {"tags": ["Infrastructure"], "description": _INFRA["/metrics"], "responses": {}}}
    paths["/metrics"]["get"]["responses"] = {"200": {"description": "OK"}}
    document["paths"] = {path: paths[path] for path in sorted(paths, key=_path_rank)}
    document.pop("servers", None)  # the page's own origin (BentoML's "." showed as an empty server choice)
    document["tags"] = [
        {"name": "Service APIs", "description": "predictions, campaigns and search"},
        {"name": "Infrastructure", "description": "health and metrics"},
    ]
    document["openapi"] = "3.0.3"
    return openapi30(document)


# ------------------------------------------------------------------ Swagger UI
SWAGGER_UI_HTML = """\
<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <title>{title}</title>
    <link rel="stylesheet" type="text/css" href="./static_content/swagger-ui.css" />
    <link rel="icon" type="image/png" href="./static_content/favicon-light-32x32.png" sizes="32x32" />
    <style>body {{ margin: 0; background: #fafafa; }}</style>
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="./static_content/swagger-ui-bundle.js" charset="UTF-8"></script>
    <script>
      window.onload = function () {{
        window.ui = SwaggerUIBundle({{
          url: "./docs.json",
          dom_id: "#swagger-ui",
          deepLinking: true,
          presets: [SwaggerUIBundle.presets.apis],
          layout: "BaseLayout",
          validatorUrl: null,
          persistAuthorization: true,
          displayRequestDuration: true,
        }});
      }};
    </script>
  </body>
</html>
"""


def swagger_ui_html() -> str:
    """The page at ``/``: Swagger UI on ``./docs.json`` from local assets only."""
    return SWAGGER_UI_HTML.format(title=TITLE)
