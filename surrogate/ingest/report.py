"""An ingest as an MLflow run: the figures of the reduction and the rows as a dataset with their sources.

:func:`log_ingest_run` logs, in experiment :data:`INGEST_EXPERIMENT` (the project's store, see
:mod:`surrogate.tracking`):

* params: the manifest, the number of files of each kind, the circuits;
* metrics: rows written, spectra fitted, median and worst fit RMSE (ohm and fraction of \\|Z\\|),
  cycles flagged;
* figures: per sample, the Nyquist plot of each spectrum with its fit and the residuals
  (``plots/nyquist/<sample>.png``); the Arrhenius plot of the fitted σ (``plots/arrhenius.png``);
  discharge capacity against cycle for every cycler file (``plots/capacity.png``);
* the rows as an MLflow dataset (context ``ingest``) whose digest is :func:`source_digest` of the
  raw files, with ``ingest/sources.json`` listing each file's name, format and sha256, and the rows
  themselves as ``ingest/rows.csv``.
"""

from __future__ import annotations

import warnings
from typing import Any

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from surrogate.design import ANNEAL_TEMP_C, CONDUCTIVITY, TEST_TEMP_C  # noqa: E402
from surrogate.ingest import cycling  # noqa: E402
from surrogate.ingest.pipeline import (  # noqa: E402
    FIT_RMSE_OHM,
    IngestResult,
    SpectrumReduction,
    arrhenius_by_sample,
    rows_csv_text,
    source_digest,
)
from surrogate.schema import EXPERIMENT, SAMPLE_ID  # noqa: E402

INGEST_EXPERIMENT = "llto-ingest"
KELVIN = 273.15


# ------------------------------------------------------------------ figures
def nyquist_figure(sample_id: str, spectra: list[SpectrumReduction]) -> Figure:
    """Nyquist plot (−Im Z against Re Z, ohm) of a sample's spectra with their fits, and the relative residuals."""
    fig = Figure(figsize=(7.0, 7.5), layout="constrained")
    nyquist, residuals = fig.subplots(2, 1, height_ratios=[2, 1])
    for item in sorted(spectra, key=lambda s: s.entry.test_temp_c):
        spectrum, fit = item.spectrum, item.fit
        f = np.asarray(spectrum.frequency_hz, dtype=float)
        z = np.asarray(spectrum.z_real_ohm) + 1j * np.asarray(spectrum.z_imag_ohm)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Simulating circuit based on initial parameters")
            fitted = np.asarray(fit.impedance_ohm(f))
        label = f"{item.entry.test_temp_c:g} °C"
        points = nyquist.plot(z.real, -z.imag, "o", markersize=3, label=f"{label} measured")[0]
        nyquist.plot(fitted.real, -fitted.imag, "-", color=points.get_color(), label=f"{label} fit")
        relative = (z - fitted) / np.abs(z)
        residuals.semilogx(f, relative.real * 100, "o-", markersize=2, color=points.get_color(), label=f"{label} Re")
        residuals.semilogx(f, relative.imag * 100, "x--", markersize=2, color=points.get_color(), label=f"{label} Im")
    circuit = spectra[0].fit.circuit if spectra else ""
    nyquist.set(xlabel="Re Z (ohm)", ylabel="−Im Z (ohm)", title=f"{sample_id}: spectra and {circuit} fits")
    nyquist.set_aspect("equal", adjustable="datalim")
    nyquist.legend(fontsize=6, ncols=2)
    residuals.axhline(0.0, color="grey", linewidth=0.8)
    residuals.set(xlabel="frequency (Hz)", ylabel="residual (% of |Z|)")
    return fig


def arrhenius_figure(result: IngestResult) -> Figure:
    """log10 σ (S/cm) against 1000/T (1/K) of every ingested spectrum, one line per sample, with Ea in the legend."""
    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    axes = fig.add_subplot()
    rows = result.rows[result.rows[EXPERIMENT] == "conductivity"]
    ea = arrhenius_by_sample(result).set_index(SAMPLE_ID)["activation_energy_ev"].to_dict()
    for sample, group in rows.groupby(SAMPLE_ID, sort=True):
        group = group.sort_values(TEST_TEMP_C)
        x = 1000.0 / (group[TEST_TEMP_C].to_numpy(float) + KELVIN)
        label = f"{sample} ({group[ANNEAL_TEMP_C].iloc[0]:g} °C anneal)"
        if sample in ea:
            label += f", Ea {ea[sample]:.3f} eV"
        axes.semilogy(x, group[CONDUCTIVITY].to_numpy(float), "o-", label=label)
    axes.set(xlabel="1000 / T (1/K)", ylabel="σ (S/cm)", title="Arrhenius plot of the fitted conductivity")
    if len(rows):
        axes.legend(fontsize=6)
    return fig


def capacity_figure(result: IngestResult) -> Figure:
    """Discharge capacity (mAh) against cycle for every cycler file; flagged cycles marked with crosses."""
    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    axes = fig.add_subplot()
    for item in result.cyclers:
        frame = item.table.frame
        good = frame[frame["flag"] == ""]
        bad = frame[frame["flag"] != ""]
        line = axes.plot(good[cycling.CYCLE], good[cycling.DISCHARGE_AH] * 1e3, ".-", markersize=3)[0]
        line.set_label(f"{item.entry.sample_id} ({item.entry.experiment})")
        if len(bad):
            axes.plot(bad[cycling.CYCLE], bad[cycling.DISCHARGE_AH] * 1e3, "x", color=line.get_color())
    axes.set(xlabel="cycle", ylabel="discharge capacity (mAh)", title="Capacity against cycle (x: flagged cycles)")
    if result.cyclers:
        axes.legend(fontsize=6)
    return fig


# ------------------------------------------------------------------ the run
def _metrics(result: IngestResult) -> dict[str, float]:
    rows = result.rows
    metrics: dict[str, float] = {
        "rows": float(len(rows)),
        "files": float(len(result.sources)),
        "spectra": float(len(result.spectra)),
        "cycler_files": float(len(result.cyclers)),
        "cycles_flagged": float(sum(len(c.table.flagged()) for c in result.cyclers)),
    }
    if result.spectra:
        rmse = rows[FIT_RMSE_OHM].dropna().to_numpy(float)
        relative = np.array([s.fit.rmse_relative for s in result.spectra if hasattr(s.fit, "rmse_relative")])
        metrics["fit_rmse_ohm_median"] = float(np.median(rmse))
        metrics["fit_rmse_ohm_max"] = float(np.max(rmse))
        if relative.size:
            metrics["fit_rmse_fraction_of_z_median"] = float(np.median(relative))
            metrics["fit_rmse_fraction_of_z_max"] = float(np.max(relative))
    return metrics


def log_ingest_run(result: IngestResult, out_name: str, experiment: str = INGEST_EXPERIMENT) -> dict[str, Any]:
    """Log ``result`` as one MLflow run (module docstring); returns ``{"run_id", "experiment_id"}``.

    A failure while logging ends the run FAILED and re-raises.
    """
    import mlflow

    from surrogate.tracking import NOTE_TAG, configure_mlflow

    configure_mlflow(experiment)
    kinds = result.rows[EXPERIMENT].value_counts().to_dict()
    digest = source_digest(result.sources)
    with mlflow.start_run(run_name=f"ingest {result.manifest.path.name} ({len(result.rows)} rows)") as run:
        mlflow.set_tags({"kind": "ingest", "manifest": str(result.manifest.path), "source_digest_sha256": digest})
        mlflow.log_params(
            {
                "manifest": result.manifest.path.name,
                "out": out_name,
                "files": len(result.sources),
                "circuits": ",".join(sorted({s.fit.circuit for s in result.spectra})) or "-",
                **{f"rows_{kind}": int(count) for kind, count in kinds.items()},
            }
        )
        mlflow.log_metrics(_metrics(result))
        by_sample: dict[str, list[SpectrumReduction]] = {}
        for item in result.spectra:
            by_sample.setdefault(item.entry.sample_id, []).append(item)
        for sample, items in sorted(by_sample.items()):
            mlflow.log_figure(nyquist_figure(sample, items), f"plots/nyquist/{sample}.png")
        if result.spectra:
            mlflow.log_figure(arrhenius_figure(result), "plots/arrhenius.png")
        if result.cyclers:
            mlflow.log_figure(capacity_figure(result), "plots/capacity.png")
        mlflow.log_dict({"source_digest_sha256": digest, "files": result.sources}, "ingest/sources.json")
        mlflow.log_text(rows_csv_text(result.rows), "ingest/rows.csv")
        ea = arrhenius_by_sample(result)
        if len(ea):
            mlflow.log_text(ea.to_csv(index=False), "ingest/activation_energies.csv")
        integers = [c for c in result.rows.columns if str(result.rows[c].dtype) == "Int64"]
        frame = result.rows.astype(dict.fromkeys(integers, float))  # nullable integers make MLflow warn
        with warnings.catch_warnings():  # and a local source matches two source types, harmlessly
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_pandas(
                frame, source=str(result.manifest.path.resolve()), name=out_name, digest=digest[:16]
            )
            mlflow.log_input(dataset, context="ingest", tags={"source_digest_sha256": digest})
        mlflow.set_tag(NOTE_TAG, _note(result, digest))
        return {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id}


def _note(result: IngestResult, digest: str) -> str:
    lines = [
        f"Ingest of `{result.manifest.path.name}`: {len(result.sources)} raw files → {len(result.rows)} rows.",
        f"Source digest (sha256 over every file's name and sha256): `{digest}`.",
    ]
    ea = arrhenius_by_sample(result)
    for row in ea.itertuples():
        lines.append(f"- {row.sample_id}: Ea {row.activation_energy_ev:.3f} eV from {row.points} temperatures")
    if result.warnings:
        lines.append(f"{len(result.warnings)} cycles flagged and left out (see the capacity plot).")
    return "\n".join(lines)


__all__ = ["INGEST_EXPERIMENT", "arrhenius_figure", "capacity_figure", "log_ingest_run", "nyquist_figure"]
