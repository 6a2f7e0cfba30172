"""Reduction of raw instrument data (EIS spectra, cycler files) to data-set rows (issue 16).

- :mod:`surrogate.ingest.manifest`: the manifest (one entry per raw file: geometry, design, C-rate steps);
- :mod:`surrogate.ingest.formats` and :mod:`surrogate.ingest.eis`: spectra and their circuit fits;
- :mod:`surrogate.ingest.conductivity`: σ = thickness / (R_bulk · area) with its uncertainty;
- :mod:`surrogate.ingest.cycling`: cycler exports → capacity per cycle → retentions;
- :mod:`surrogate.ingest.pipeline`: manifest + files → rows with provenance (``surrogate data ingest``);
- :mod:`surrogate.ingest.report`: the ingest's MLflow run.

See docs/ingest.md.
"""
