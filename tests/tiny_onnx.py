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
        [
            helper.make_node("Conv", ["input.1", "weight", "bias"], ["logits"]),
            helper.make_node("Sigmoid", ["logits"], ["d0"]),
        ],
        "brightness_segmenter",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("d0", TensorProto.FLOAT, [1, 1, size, size])],
        initializer=[weight, bias],
    )
    return _save(graph, path)


WD14_TAGS = [  # (name, category): what the tiny tagger can say
    ("general", 9),
    ("sensitive", 9),
    ("1girl", 0),
    ("solo", 0),
    ("standing", 0),
    ("smile", 0),
    ("red_dress", 0),
    ("grey_background", 0),
    ("upper_body", 0),
    ("long_hair", 0),
    ("mira_(demo)", 4),
]


def wd14_tagger(folder: Path, size: int = 448) -> Path:
    """A WD14-format tagger folder (model.onnx + selected_tags.csv).

    The model reads the mean B, G, R of the image (NHWC, BGR, 0-255 as WD14 taggers do) and scores
    tags linearly from them: red photos get 'red_dress', grey ones 'grey_background', and every
    photo '1girl', 'solo', 'standing', 'smile', the character tag and the rating tags. 'long_hair'
    and 'upper_body' stay below the thresholds.
    """
    folder.mkdir(parents=True, exist_ok=True)
    names = [n for n, _ in WD14_TAGS]
    weights = np.zeros((3, len(names)), np.float32)  # rows: mean B, G, R scaled to 0..1
    bias = np.full(len(names), 4.0, np.float32)  # confident by default
    bias[names.index("long_hair")] = bias[names.index("upper_body")] = -4.0
    i = names.index("red_dress")
    weights[:, i], bias[i] = (-8.0, -8.0, 12.0), -2.0  # red > blue and green
    i = names.index("grey_background")
    weights[:, i], bias[i] = (6.0, 6.0, -6.0), -1.0
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["input_1:0"], ["mean"], axes=[1, 2], keepdims=0),
            helper.make_node("Mul", ["mean", "scale"], ["unit"]),
            helper.make_node("MatMul", ["unit", "weights"], ["logits"]),
            helper.make_node("Add", ["logits", "bias"], ["biased"]),
            helper.make_node("Sigmoid", ["biased"], ["predictions_sigmoid"]),
        ],
        "tiny_wd14",
        [helper.make_tensor_value_info("input_1:0", TensorProto.FLOAT, ["batch", size, size, 3])],
        [helper.make_tensor_value_info("predictions_sigmoid", TensorProto.FLOAT, ["batch", len(names)])],
        initializer=[
            numpy_helper.from_array(np.array(1 / 255, np.float32), "scale"),
            numpy_helper.from_array(weights, "weights"),
            numpy_helper.from_array(bias, "bias"),
        ],
    )
    _save(graph, folder / "model.onnx")
    lines = ["tag_id,name,category,count"] + [f"{i},{n},{c},100" for i, (n, c) in enumerate(WD14_TAGS)]
    (folder / "selected_tags.csv").write_text("\n".join(lines) + "\n")
    return folder
