"""gradflow: the helper package of the course *Why residual networks train*.

Small, pure functions that the chapters import: seeded data (:mod:`gradflow.data`),
plain and residual MLPs with gradient probes (:mod:`gradflow.nets`), one figure
style (:mod:`gradflow.plots`). Nothing here sets a global seed or changes global
state at import.
"""

from . import data, nets, plots

__all__ = ["data", "nets", "plots"]
__version__ = "0.1.0"
