"""Tiny ONNX models built by the tests, so that the real onnxruntime/rembg loading code runs."""

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _save(graph, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="charlora-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def brightness_segmenter(path: Path, size: int = 320) -> Path:
    """A U^2-Net-shaped model (1x3xSxS -> 1x1xSxS): 'subject' = bright pixels (mean of RGB, sigmoid)."""
    weight = numpy_helper.from_array(np.full((1, 3, 1, 1), 4.0 / 3.0, np.float32), "weight")
    bias = numpy_helper.from_array(np.array([-1.0], np.float32), "bias")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input.1", "weight", "bias"], ["logits"]),
         helper.make_node("Sigmoid", ["logits"], ["d0"])],
        "brightness_segmenter",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("d0", TensorProto.FLOAT, [1, 1, size, size])],
        initializer=[weight, bias],
    )
    return _save(graph, path)
