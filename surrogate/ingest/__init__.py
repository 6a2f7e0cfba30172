"""Reduction of raw instrument data (EIS spectra, cycler files) to data-set rows (issue 16)."""
