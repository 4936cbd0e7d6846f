"""The same test in ComfyUI: a ComfyUI workflow for every validation sample.

The guide tests an epoch in ComfyUI ("Initial testing with ComfyUI"). Each sample PNG carries, beside
A1111's `parameters`, the two text chunks ComfyUI writes into its own images and reads back when an
image is dropped on its canvas:

- `prompt`: the graph in ComfyUI's API format (node id -> class_type and inputs; a link is
  [node id, output slot]), what ComfyUI's /prompt endpoint runs;
- `workflow`: the same graph as ComfyUI's editor saves it (nodes with their widgets' values in the
  order the node declares them, and the links), which the editor opens as it is.

The graph: CheckpointLoaderSimple (the base model's file name) -> LoraLoader (the epoch's LoRA as
`<run>/epoch-<eee>.safetensors`, strength 1; none for epoch 0, the base model) -> CLIPTextEncode of
the prompt and of the negative prompt (an empty negative prompt zeroed by ConditioningZeroOut, as
diffusers' SDXL pipeline does) -> EmptyLatentImage at the sample's size -> KSampler (seed, steps,
CFG, sampler and scheduler under ComfyUI's names) -> VAEDecode -> SaveImage.

The pixels will differ from the sample's: the sample comes from the fine-tuned UNet, the LoRA
reproduces most of its change (lora/epoch-<eee>.verify.json says how much), and ComfyUI's samplers
are k-diffusion's, not diffusers'. Node names, inputs and choices are ComfyUI 0.3.64's (nodes.py,
comfy/samplers.py); tests/comfyui/nodes-0.3.64.json holds them as data and the tests check every
workflow against it. Nodes and inputs are written in a fixed order: the same sample, the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

# config `validate.sampler` -> ComfyUI's (sampler_name, scheduler): the k-diffusion sampler that solves
# the same equation, and the sigma spacing closest to the diffusers scheduler's
SAMPLERS = {
    "euler": ("euler", "normal"),
    "euler_a": ("euler_ancestral", "normal"),
    "dpmpp_2m": ("dpmpp_2m", "normal"),
    "dpmpp_2m_karras": ("dpmpp_2m", "karras"),
    "ddim": ("ddim", "ddim_uniform"),
    "unipc": ("uni_pc", "normal"),
}

# The node classes used here: their outputs and their widgets (the inputs that are values, not links),
# in the order ComfyUI declares them; a widget in `WITH_CONTROL` is followed in the editor's values by
# its "control after generate" choice.
OUTPUTS = {
    "CheckpointLoaderSimple": ("MODEL", "CLIP", "VAE"),
    "LoraLoader": ("MODEL", "CLIP"),
    "CLIPTextEncode": ("CONDITIONING",),
    "ConditioningZeroOut": ("CONDITIONING",),
    "EmptyLatentImage": ("LATENT",),
    "KSampler": ("LATENT",),
    "VAEDecode": ("IMAGE",),
    "SaveImage": (),
}
WITH_CONTROL = {("KSampler", "seed")}


@dataclass(frozen=True)
class Link:
    node: int  # the id of the node whose output this is
    slot: int  # which of its outputs


@dataclass(frozen=True)
class Node:
    id: int
    class_type: str
    title: str
    inputs: dict  # name -> value or Link, in the order ComfyUI declares the inputs
    pos: tuple[int, int]  # where the editor draws it
    size: tuple[int, int]


@dataclass(frozen=True)
class Test:
    """One sample as a ComfyUI test: what the PNG's workflow sets up."""

    prompt: str
    negative_prompt: str
    seed: int
    steps: int
    cfg: float
    sampler: str  # charlora's name (config `validate.sampler`)
    resolution: int
    checkpoint: str  # the base model's file name in ComfyUI/models/checkpoints
    lora: str | None  # the LoRA's name in ComfyUI/models/loras; None: the base model alone
    filename_prefix: str


def graph(test: Test) -> list[Node]:
    """The nodes of `test`'s workflow, each after the nodes it reads."""
    sampler_name, scheduler = SAMPLERS[test.sampler]
    nodes = [Node(1, "CheckpointLoaderSimple", "Base model", {"ckpt_name": test.checkpoint}, (40, 260), (320, 100))]
    model, clip = Link(1, 0), Link(1, 1)
    if test.lora is not None:
        lora_inputs = {
            "model": model,
            "clip": clip,
            "lora_name": test.lora,
            "strength_model": 1.0,
            "strength_clip": 1.0,
        }
        nodes.append(Node(2, "LoraLoader", "LoRA of the epoch", lora_inputs, (400, 260), (320, 130)))
        model, clip = Link(2, 0), Link(2, 1)
    nodes.append(Node(3, "CLIPTextEncode", "Prompt", {"text": test.prompt, "clip": clip}, (760, 80), (420, 200)))
    nodes.append(
        Node(
            4, "CLIPTextEncode", "Negative prompt", {"text": test.negative_prompt, "clip": clip}, (760, 330), (420, 200)
        )
    )
    negative = Link(4, 0)
    if not test.negative_prompt:
        nodes.append(
            Node(5, "ConditioningZeroOut", "Empty negative: zeros", {"conditioning": negative}, (1210, 330), (240, 30))
        )
        negative = Link(5, 0)
    size = {"width": test.resolution, "height": test.resolution, "batch_size": 1}
    nodes.append(Node(6, "EmptyLatentImage", "Sample size", size, (760, 580), (320, 110)))
    sampler_inputs = {
        "model": model,
        "seed": test.seed,
        "steps": test.steps,
        "cfg": float(test.cfg),
        "sampler_name": sampler_name,
        "scheduler": scheduler,
        "positive": Link(3, 0),
        "negative": negative,
        "latent_image": Link(6, 0),
        "denoise": 1.0,
    }
    nodes.append(Node(7, "KSampler", "KSampler", sampler_inputs, (1490, 80), (320, 270)))
    nodes.append(Node(8, "VAEDecode", "VAE Decode", {"samples": Link(7, 0), "vae": Link(1, 2)}, (1850, 80), (210, 50)))
    nodes.append(
        Node(
            9,
            "SaveImage",
            "Save Image",
            {"images": Link(8, 0), "filename_prefix": test.filename_prefix},
            (2100, 80),
            (420, 460),
        )
    )
    return nodes


def api_prompt(nodes: list[Node]) -> dict:
    """ComfyUI's API format: {"<id>": {"inputs": {...}, "class_type": ..., "_meta": {"title": ...}}}."""
    return {
        str(n.id): {
            "inputs": {k: [str(v.node), v.slot] if isinstance(v, Link) else v for k, v in n.inputs.items()},
            "class_type": n.class_type,
            "_meta": {"title": n.title},
        }
        for n in nodes
    }


def editor_workflow(nodes: list[Node]) -> dict:
    """The editor's format (LiteGraph's, version 0.4): nodes with link inputs, outputs and widget values,
    and the links as [id, from node, from slot, to node, to slot, type]."""
    by_id = {n.id: n for n in nodes}
    links = [
        (source, name, target) for target in nodes for name, source in target.inputs.items() if isinstance(source, Link)
    ]
    link_ids = {(target.id, name): i for i, (_, name, target) in enumerate(links, 1)}
    editor_nodes = []
    for order, n in enumerate(nodes):
        outputs = []
        for slot, kind in enumerate(OUTPUTS[n.class_type]):
            to = [link_ids[(t.id, name)] for s, name, t in links if s == Link(n.id, slot)]
            outputs.append({"name": kind, "type": kind, "links": to, "slot_index": slot})
        widgets = []
        for name, value in n.inputs.items():
            if not isinstance(value, Link):
                widgets.append(value)
                if (n.class_type, name) in WITH_CONTROL:
                    widgets.append("fixed")
        editor_nodes.append(
            {
                "id": n.id,
                "type": n.class_type,
                "title": n.title,
                "pos": list(n.pos),
                "size": list(n.size),
                "flags": {},
                "order": order,
                "mode": 0,
                "inputs": [
                    {"name": name, "type": OUTPUTS[by_id[v.node].class_type][v.slot], "link": link_ids[(n.id, name)]}
                    for name, v in n.inputs.items()
                    if isinstance(v, Link)
                ],
                "outputs": outputs,
                "properties": {"Node name for S&R": n.class_type},
                "widgets_values": widgets,
            }
        )
    return {
        "last_node_id": max(by_id),
        "last_link_id": len(links),
        "nodes": editor_nodes,
        "links": [
            [i, s.node, s.slot, t.id, _link_slot(t, name), OUTPUTS[by_id[s.node].class_type][s.slot]]
            for i, (s, name, t) in enumerate(links, 1)
        ],
        "groups": [],
        "config": {},
        "extra": {},
        "version": 0.4,
    }


def _link_slot(node: Node, name: str) -> int:
    """The position of input `name` among `node`'s link inputs (the editor's target slot)."""
    return [k for k, v in node.inputs.items() if isinstance(v, Link)].index(name)


def png_chunks(test: Test) -> dict[str, str]:
    """The `prompt` and `workflow` text chunks of a sample, as ComfyUI writes them (JSON, ASCII)."""
    nodes = graph(test)
    return {"prompt": json.dumps(api_prompt(nodes)), "workflow": json.dumps(editor_workflow(nodes))}
