"""Quantisation: uniform maths, BN folding, equalisation, observers, PTQ and QAT fake-quant
models, int8 ONNX export run by ONNX Runtime, mixed precision, and weight clustering.

`deepshrink.quantize(model, calibration_data, method="ptq", bits=8)` is the verb; importing this
package registers the "fold_bn", "equalize" and "quantize" model transforms."""

from deepshrink.quantization.api import METHODS, QuantizeResult, prepare_model, quantize
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
from deepshrink.quantization.folding import fold_bn
from deepshrink.quantization.int8_export import export_int8_onnx
from deepshrink.quantization.observers import OBSERVERS
from deepshrink.quantization.act_quant import ACT_QUANTIZERS
from deepshrink.quantization.weight_quant import WEIGHT_QUANTIZERS

__all__ = [
    "ACT_QUANTIZERS",
    "METHODS",
    "OBSERVERS",
    "WEIGHT_QUANTIZERS",
    "ActQuantizer",
    "Advanced",
    "Method",
    "ObserverName",
    "QuantizeConfig",
    "QuantizeResult",
    "WeightQuantizer",
    "equalize",
    "export_int8_onnx",
    "fold_bn",
    "prepare_model",
    "quantize",
    "to_deploy",
]
