"""wanir: an analytic performance model of the Wan2.1 video-generation pipeline.

Each model of the pipeline is lowered into a typed operator graph whose nodes are
annotated with FLOPs, bytes moved and memory held; backends turn the annotated graph into
time estimates, multi-GPU variants, diagrams and reports.

    >>> import wanir
    >>> est = wanir.estimate(["model=wan2.1-t2v-1.3b", "workload.height=480", "workload.width=832"])
    >>> est.to_dict()["total"]["tensor_flops"]            # doctest: +SKIP
"""
from .backends.parallel import multi_device_cost
from .builder import GraphBuilder
from .dtypes import DType, get_dtype
from .errors import ConfigError, GraphError, ShapeError, SpecError, UnknownOpError, WanirError
from .estimate import Counted, Estimate, build, count, estimate, estimate_graph, evaluate, time
from .graph import Graph, Node, Value, Weight
from .resolve import resolve
from .scenario import Build, Run, Scenario
from .scope import Scope
from .tensor import TensorType


def plan(traffic, **kw):
    """Capacity plan for request traffic (``wanir plan``; docs/capacity.md): ``traffic`` is a
    traffic YAML path, a mapping with its content or a checked Traffic; keywords as
    :func:`wanir.backends.capacity.plan` (hardware, devices, prices, simulate, jobs).
    Returns a PlanResult whose ``to_dict()`` is the JSON of ``wanir plan --format json``
    (seconds, USD)."""
    from wanir.backends.capacity import plan as _plan  # late import: the planner loads only when used
    return _plan(traffic, **kw)


__version__ = "0.1.0"
__all__ = [
    "multi_device_cost", "plan",
    "GraphBuilder", "DType", "get_dtype", "ConfigError", "GraphError", "ShapeError", "SpecError",
    "UnknownOpError", "WanirError", "Estimate", "build", "estimate", "estimate_graph", "Graph", "Node",
    "resolve", "count", "time", "evaluate", "Counted", "Scenario", "Build", "Run",
    "Value", "Weight", "Scope", "TensorType",
]
