"""Surrogate model families (one module each) and the multi-target bundle in :mod:`surrogate.models.base`."""
