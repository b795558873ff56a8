"""Quantisation: uniform maths, BN folding, equalisation, observers, PTQ and QAT fake-quant
models, int8 ONNX export run by ONNX Runtime (and the ONNX Runtime / PyTorch int8 peers), mixed
precision, weight clustering with Huffman-coded indices, and the latency-aware float fallback
(layers whose int8 kernel is slower on this CPU stay float).

`deepshrink.quantize(model, calibration_data, method="ptq", bits=8)` is the verb; importing this
package registers the "fold_bn", "equalize", "quantize" and "cluster" model transforms."""

from deepshrink.quantization.act_quant import ACT_QUANTIZERS
from deepshrink.quantization.api import METHODS, QuantizeResult, prepare_model, quantize
from deepshrink.quantization.baselines import ort_quantize_static, torch_x86_int8
from deepshrink.quantization.clustering import ClusterResult, cluster_weights, finetune_centroids
from deepshrink.quantization.config import (
    ActQuantizer,
    Advanced,
    Method,
    ObserverName,
    QuantizeConfig,
    WeightQuantizer,
)
from deepshrink.quantization.deploy import to_deploy
from deepshrink.quantization.equalization import equalize
from deepshrink.quantization.fallback import FallbackResult, LayerTiming, latency_fallback
from deepshrink.quantization.folding import fold_bn
from deepshrink.quantization.int8_export import export_int8_onnx
from deepshrink.quantization.mixed import layer_sensitivity, mixed_precision
from deepshrink.quantization.observers import OBSERVERS
from deepshrink.quantization.progressive import latent_float_model
from deepshrink.quantization.weight_quant import WEIGHT_QUANTIZERS

__all__ = [
    "ACT_QUANTIZERS",
    "METHODS",
    "OBSERVERS",
    "WEIGHT_QUANTIZERS",
    "ActQuantizer",
    "Advanced",
    "ClusterResult",
    "FallbackResult",
    "LayerTiming",
    "Method",
    "ObserverName",
    "QuantizeConfig",
    "QuantizeResult",
    "WeightQuantizer",
    "cluster_weights",
    "equalize",
    "export_int8_onnx",
    "latency_fallback",
    "finetune_centroids",
    "fold_bn",
    "latent_float_model",
    "layer_sensitivity",
    "mixed_precision",
    "ort_quantize_static",
    "prepare_model",
    "quantize",
    "to_deploy",
    "torch_x86_int8",
]
