"""The leaf of the package: what every layer shares and nothing else — the study's
sections (:mod:`~vrsearch.core.config`), a training step's data and output
(:mod:`~vrsearch.core.step`) and name suggestions (:mod:`~vrsearch.core.names`).
It imports nothing else of vrsearch but :mod:`vrsearch.errors`."""
