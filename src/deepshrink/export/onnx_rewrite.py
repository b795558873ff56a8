"""Graph rewrites applied to every exported ONNX graph, exact in value, for how ONNX Runtime runs it.

A per-channel constant added to a feature map (`x + c`, c of shape [1, C, 1, 1]: what depth
pruning leaves of a dropped residual branch) becomes a depthwise 1x1 convolution with unit weights
and bias c. ONNX Runtime's CPU provider keeps convolutions in its blocked NCHWc layout and fuses a
following ReLU and residual sum into them; a broadcast Add it cannot, so it reorders to NCHW there
and every later residual block of the stage runs its sum unfused (measured on ResNet-56 with FPGM
halving: dropping the first first-stage block made the model 1.3 % slower, the last one 5 % faster;
docs/benchmarks/extra/pruning_resnet56_kd_20epochs.md)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


def channel_constant_adds_as_convs(proto: onnx.ModelProto) -> int:
    """In place: each Add of a 4-D feature map [N, C, H, W] and a [1, C, 1, 1] float initializer
    becomes Conv(x, ones[C, 1, 1, 1], c, group=C). Returns how many were rewritten."""
    graph = proto.graph
    initializers = {t.name: t for t in graph.initializer}
    candidates = {}  # Add node index -> (feature input, per-channel constant); shape inference only if any
    for index, node in enumerate(graph.node):
        constant = next((initializers[i] for i in node.input if i in initializers), None) if node.op_type == "Add" else None
        if constant is None or len(node.input) != 2 or constant.data_type != onnx.TensorProto.FLOAT:
            continue
        value = numpy_helper.to_array(constant)
        if value.ndim == 4 and value.shape == (1, value.shape[1], 1, 1):
            candidates[index] = (node.input[1] if node.input[0] == constant.name else node.input[0], value)
    if not candidates:
        return 0
    shapes = _static_shapes(proto)
    nodes, rewritten = list(graph.node), 0
    for index, (feature, value) in candidates.items():
        node, channels, shape = nodes[index], value.shape[1], shapes.get(feature)
        if shape is None or len(shape) != 4 or shape[1] != channels:
            continue
        weight = numpy_helper.from_array(np.ones((channels, 1, 1, 1), np.float32), f"{node.name or feature}_unit_weight")
        bias = numpy_helper.from_array(value.reshape(channels).astype(np.float32), f"{node.name or feature}_channel_bias")
        graph.initializer.extend([weight, bias])
        nodes[index] = helper.make_node("Conv", [feature, weight.name, bias.name], list(node.output),
                                        name=node.name or None, group=channels, kernel_shape=[1, 1])
        rewritten += 1
    if rewritten:
        del graph.node[:]
        graph.node.extend(nodes)
        used = {name for n in graph.node for name in n.input}
        for tensor in [t for t in graph.initializer if t.name not in used]:
            graph.initializer.remove(tensor)
    return rewritten


def _static_shapes(proto: onnx.ModelProto) -> dict[str, tuple]:
    """Value name -> shape (a dim is an int, or None when symbolic) from ONNX shape inference."""
    inferred = onnx.shape_inference.infer_shapes(proto)
    values = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    shapes = {}
    for value in values:
        tensor = value.type.tensor_type
        if tensor.HasField("shape"):
            shapes[value.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)
    return shapes
