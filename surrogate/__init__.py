"""Surrogate and optimisation service for sputtered LLTO thin-film all-solid-state batteries.

The library knows the science (:mod:`surrogate.physics`, :mod:`surrogate.lab`),
the vocabulary (:mod:`surrogate.design`), the data (:mod:`surrogate.schema`,
:mod:`surrogate.dataset`) and the models; it knows nothing of HTTP or argv.
"""

__version__ = "0.1.0"
