"""Every sample's ComfyUI workflow, checked against ComfyUI's own node definitions (tests/comfyui/, taken
from ComfyUI 0.3.64's nodes.py and comfy/samplers.py): class names, required inputs in order, link types,
widget values within their bounds or among their choices, sampler and scheduler names; the editor's copy
of the graph says the same as the API copy; the bytes are stable."""

import json
from pathlib import Path

import pytest
from PIL import Image

from charlora import comfyui, sample

NODES = json.loads((Path(__file__).parent / "comfyui" / "nodes-0.3.64.json").read_text())
LINK_TYPES = {"MODEL", "CLIP", "VAE", "CONDITIONING", "LATENT", "IMAGE"}


def choices(spec: dict, files: dict[str, list[str]]) -> list[str]:
    where = spec["choices"]
    return files[where.removeprefix("files:")] if where.startswith("files:") else NODES[where]


def widget_problem(spec: dict, value, files: dict[str, list[str]]) -> str | None:
    """What is wrong with `value` for the widget `spec` (None: nothing)."""
    kind = spec["type"]
    if kind == "COMBO":
        return None if value in choices(spec, files) else f"{value!r} is not one of the choices"
    if kind == "STRING":
        return None if isinstance(value, str) else f"{value!r} is not a string"
    if kind == "INT" and (isinstance(value, bool) or not isinstance(value, int)):
        return f"{value!r} is not an integer"
    if kind == "FLOAT" and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return f"{value!r} is not a number"
    if not spec["min"] <= value <= spec["max"]:
        return f"{value} is outside [{spec['min']}, {spec['max']}]"
    if "step" in spec and value % spec["step"]:
        return f"{value} is not a multiple of {spec['step']}"
    return None


def api_problems(prompt: dict, files: dict[str, list[str]]) -> list[str]:
    """Everything ComfyUI's validation (execution.py's validate_inputs) would refuse in an API-format prompt,
    and nodes that no output needs (ComfyUI would not run them)."""
    problems = []
    for node_id, node in prompt.items():
        definition = NODES["nodes"].get(node["class_type"])
        if definition is None:
            problems.append(f"{node_id}: no node class {node['class_type']}")
            continue
        names = [spec["name"] for spec in definition["required"]]
        if list(node["inputs"]) != names:
            problems.append(f"{node_id}: inputs {list(node['inputs'])}, ComfyUI declares {names}")
        for spec in definition["required"]:
            value = node["inputs"].get(spec["name"])
            if spec["type"] in LINK_TYPES:
                if not (isinstance(value, list) and len(value) == 2 and value[0] in prompt):
                    problems.append(f"{node_id}.{spec['name']}: {value!r} is not a link to a node")
                    continue
                source = NODES["nodes"][prompt[value[0]]["class_type"]]["outputs"]
                if not value[1] < len(source) or source[value[1]] != spec["type"]:
                    problems.append(f"{node_id}.{spec['name']}: output {value} is not a {spec['type']}")
            elif (problem := widget_problem(spec, value, files)) is not None:
                problems.append(f"{node_id}.{spec['name']}: {problem}")
    needed = [i for i, n in prompt.items() if NODES["nodes"].get(n["class_type"], {}).get("output_node")]
    if not needed:
        problems.append("no output node")
    for node_id in needed:  # walk back from the outputs: every node must be reached
        for value in prompt[node_id]["inputs"].values():
            if isinstance(value, list) and value[0] in prompt and value[0] not in needed:
                needed.append(value[0])
    problems += [f"{i}: no output needs it" for i in prompt if i not in needed]
    return problems


def editor_problems(workflow: dict, prompt: dict) -> list[str]:
    """Where the editor's copy disagrees with ComfyUI's declarations or with the API copy."""
    problems = []
    nodes = {n["id"]: n for n in workflow["nodes"]}
    if sorted(str(i) for i in nodes) != sorted(prompt):
        return [f"editor nodes {sorted(nodes)} are not the prompt's {sorted(prompt)}"]
    for link_id, source, slot, target, target_slot, kind in workflow["links"]:
        if nodes[source]["outputs"][slot]["type"] != kind or link_id not in nodes[source]["outputs"][slot]["links"]:
            problems.append(f"link {link_id}: not output {slot} of node {source} as {kind}")
        entry = nodes[target]["inputs"][target_slot]
        if entry["link"] != link_id or entry["type"] != kind:
            problems.append(f"link {link_id}: not input {target_slot} of node {target}")
        if prompt[str(target)]["inputs"][entry["name"]] != [str(source), slot]:
            problems.append(f"link {link_id}: the API prompt links {target}.{entry['name']} elsewhere")
    for node_id, n in nodes.items():
        definition = NODES["nodes"][n["type"]]
        values = []
        for spec in definition["required"]:
            if spec["type"] not in LINK_TYPES:
                values.append(prompt[str(node_id)]["inputs"][spec["name"]])
                if spec.get("control_after_generate"):
                    values.append("fixed")  # the same seed every time
        if n["widgets_values"] != values:
            problems.append(f"node {node_id}: widgets {n['widgets_values']}, in ComfyUI's order {values}")
        links = [spec["name"] for spec in definition["required"] if spec["type"] in LINK_TYPES]
        if [i["name"] for i in n["inputs"]] != links:
            problems.append(f"node {node_id}: link inputs {[i['name'] for i in n['inputs']]}, not {links}")
        if [o["type"] for o in n["outputs"]] != definition["outputs"]:
            problems.append(f"node {node_id}: outputs {n['outputs']}, not {definition['outputs']}")
    return problems


def a_test(**changes) -> comfyui.Test:
    test = comfyui.Test(
        prompt="mira, smiling, close-up",
        negative_prompt="",
        seed=3,
        steps=30,
        cfg=5.0,
        sampler="euler",
        resolution=1024,
        checkpoint="sd_xl_base_1.0.safetensors",
        lora="demo/epoch-003.safetensors",
        filename_prefix="charlora/demo-epoch-003-p01-s3",
    )
    return comfyui.Test(**{**test.__dict__, **changes})


FILES = {"checkpoints": ["sd_xl_base_1.0.safetensors"], "loras": ["demo/epoch-003.safetensors"]}


@pytest.mark.parametrize("sampler", list(sample.SAMPLERS))
@pytest.mark.parametrize("lora", ["demo/epoch-003.safetensors", None])
@pytest.mark.parametrize("negative", ["", "blurry, watermark"])
def test_every_workflow_is_one_comfyui_accepts(sampler, lora, negative):
    test = a_test(sampler=sampler, lora=lora, negative_prompt=negative)
    chunks = comfyui.png_chunks(test)
    prompt, workflow = json.loads(chunks["prompt"]), json.loads(chunks["workflow"])
    assert api_problems(prompt, FILES) == []
    assert editor_problems(workflow, prompt) == []
    classes = [n["class_type"] for n in prompt.values()]
    assert ("LoraLoader" in classes) == (lora is not None)
    assert ("ConditioningZeroOut" in classes) == (negative == "")  # diffusers zeroes an empty negative prompt
    ksampler = next(n["inputs"] for n in prompt.values() if n["class_type"] == "KSampler")
    assert (ksampler["seed"], ksampler["steps"], ksampler["cfg"], ksampler["denoise"]) == (3, 30, 5.0, 1.0)
    assert (ksampler["sampler_name"], ksampler["scheduler"]) == comfyui.SAMPLERS[sampler]
    if lora:  # the model and CLIP go through the LoRA
        assert prompt[ksampler["model"][0]]["class_type"] == "LoraLoader"


def test_the_checks_find_what_comfyui_would_refuse():
    prompt = json.loads(comfyui.png_chunks(a_test())["prompt"])
    broken = json.loads(json.dumps(prompt))
    broken["7"]["inputs"]["sampler_name"] = "Euler a"  # A1111's name, not ComfyUI's
    broken["7"]["inputs"]["positive"] = ["6", 0]  # a LATENT where a CONDITIONING goes
    broken["6"]["inputs"]["width"] = 1020  # not a multiple of 8
    del broken["8"]["inputs"]["vae"]
    broken["10"] = {"inputs": {"text": "x", "clip": ["1", 1]}, "class_type": "CLIPTextEncode", "_meta": {}}
    assert api_problems(broken, FILES) == [
        "6.width: 1020 is not a multiple of 8",
        "7.sampler_name: 'Euler a' is not one of the choices",
        "7.positive: output ['6', 0] is not a CONDITIONING",
        "8: inputs ['samples'], ComfyUI declares ['samples', 'vae']",
        "8.vae: None is not a link to a node",
        "3: no output needs it",  # the prompt, once nothing reads it
        "10: no output needs it",
    ]
    assert api_problems(prompt, {"checkpoints": [], "loras": FILES["loras"]}) == [
        "1.ckpt_name: 'sd_xl_base_1.0.safetensors' is not one of the choices"
    ]


def test_every_config_sampler_has_a_comfyui_name():
    assert set(comfyui.SAMPLERS) == set(sample.SAMPLERS)
    for sampler_name, scheduler in comfyui.SAMPLERS.values():
        assert sampler_name in NODES["samplers"] and scheduler in NODES["schedulers"]


def test_odd_prompt_text_is_data_and_the_bytes_are_stable():
    odd = 'mira, "quoted" {braces} [brackets]\ttab\nnew line, café, 日本語, \\back'
    chunks = comfyui.png_chunks(a_test(prompt=odd, negative_prompt="it's"))
    assert chunks == comfyui.png_chunks(a_test(prompt=odd, negative_prompt="it's"))
    assert all(text.isascii() for text in chunks.values())  # a tEXt chunk, as ComfyUI writes it
    texts = [n["inputs"]["text"] for n in json.loads(chunks["prompt"]).values() if n["class_type"] == "CLIPTextEncode"]
    assert texts == [odd, "it's"]


def test_a_sample_png_carries_both_workflows(tiny_model, tmp_path):
    settings = sample.Settings(
        "dpmpp_2m_karras", steps=2, cfg=4.5, negative_prompt="", resolution=64, seeds=1, device="cpu"
    )
    prompts = [sample.Prompt("p01", "token", "mira")]
    embeddings = tmp_path / "prompts.safetensors"
    sample.write_embeddings(tiny_model, prompts, settings.negative_prompt, embeddings)
    [path] = sample.sample_epoch(
        tiny_model, None, prompts, embeddings, settings, tmp_path / "epoch-000", "demo-base", progress=False
    )
    with Image.open(path) as image:
        assert list(image.text) == ["parameters", "prompt", "workflow"]
        prompt, workflow = json.loads(image.text["prompt"]), json.loads(image.text["workflow"])
    assert api_problems(prompt, {"checkpoints": [tiny_model.name], "loras": []}) == []
    assert editor_problems(workflow, prompt) == []
    by_class = {n["class_type"]: n["inputs"] for n in prompt.values()}
    assert "LoraLoader" not in by_class  # epoch 0 is the base model alone
    assert by_class["KSampler"]["sampler_name"] == "dpmpp_2m" and by_class["KSampler"]["scheduler"] == "karras"
    assert (by_class["KSampler"]["cfg"], by_class["EmptyLatentImage"]["width"]) == (4.5, 64)
    assert by_class["SaveImage"]["filename_prefix"] == "charlora/demo-base-p01-s0"
