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
from .estimate import Estimate, build, estimate, estimate_graph
from .graph import Graph, Node, Value, Weight
from .scope import Scope
from .tensor import TensorType

__version__ = "0.1.0"
__all__ = [
    "multi_device_cost",
    "GraphBuilder", "DType", "get_dtype", "ConfigError", "GraphError", "ShapeError", "SpecError",
    "UnknownOpError", "WanirError", "Estimate", "build", "estimate", "estimate_graph", "Graph", "Node",
    "Value", "Weight", "Scope", "TensorType",
]
