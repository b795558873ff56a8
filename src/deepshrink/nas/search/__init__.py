"""Per-layer compression search: evolution over each prunable group's pruning ratio, scored by a
fast accuracy proxy (BatchNorm recalibration + a few validation batches) under a budget in MACs,
parameters, bytes or latency measured on ONNX Runtime (per-layer table, calibrated on whole models).
The result's plan is `PruneConfig.ratios`."""

import sys
import types

from deepshrink.nas.search.api import SearchResult, search
from deepshrink.nas.search.config import (Budget, EvolutionConfig, LatencyConfig, Metric, ProxyConfig, Runtime,
                                         SearchConfig)
from deepshrink.nas.search.latency_table import LatencyTable, measure_model
from deepshrink.nas.search.proxy import recalibrate_bn

__all__ = [
    "Budget",
    "EvolutionConfig",
    "LatencyConfig",
    "LatencyTable",
    "Metric",
    "ProxyConfig",
    "Runtime",
    "SearchConfig",
    "SearchResult",
    "measure_model",
    "recalibrate_bn",
    "search",
]


class _CallableModule(types.ModuleType):
    """`deepshrink.nas.search` names both this package and the verb (as `deepshrink.export` does):
    calling the package calls `search`, and its submodules stay importable by their dotted path."""

    def __call__(self, *args, **kwargs):
        return search(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
