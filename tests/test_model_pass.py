"""The dataset stage's model passes: one model load for many photos, entries keyed by content, and a
photo's output the same bytes whichever photos share its pass, or none; where the models run."""

import json

import numpy as np
import pytest
from PIL import Image

from charlora import devices, masks, model_pass, tags
from charlora.config import ConfigError
from tiny_onnx import brightness_segmenter, wd14_tagger


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    paths = {}
    for i, name in enumerate(["a", "b [2]", "café c"]):
        pixels = rng.integers(0, 255, (96, 64, 3), dtype=np.uint8) // (i + 1)
        paths[name] = folder / f"{name}.png"
        Image.fromarray(pixels).save(paths[name])
    return paths


def counting(load):
    """`load`, counting its calls."""

    def wrapped():
        wrapped.calls += 1
        return load()

    wrapped.calls = 0
    return wrapped


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory):
    model = brightness_segmenter(tmp_path_factory.mktemp("rembg") / "segmenter.onnx")
    return {"rembg": {"model": str(model), "session": "u2net_custom"}, "device": "cpu"}


def entries(cache, kind):
    return {p.name: p.read_bytes() for p in sorted((cache / kind.folder).glob("*"))}


def test_one_load_for_a_batch_of_the_photos_not_in_the_cache(photos, segmenter, tmp_path):
    load = counting(lambda: masks.rembg_masker(segmenter))
    settings, model = masks.model_settings(segmenter), [segmenter["rembg"]["model"]]
    others = lambda: list(photos.values())  # noqa: E731
    first, where = model_pass.photo_output(
        model_pass.MASKS, photos["a"], model, settings, load, others, tmp_path, progress=False
    )
    assert load.calls == 1 and where == "computed in a batch of 3 photo(s), one model load"
    assert len(entries(tmp_path, model_pass.MASKS)) == 4  # three entries and the lock
    for name, path in photos.items():  # the other photos' jobs find theirs: no load
        _, where = model_pass.photo_output(model_pass.MASKS, path, model, settings, load, others, tmp_path)
        assert where == "from the cache", name
    assert load.calls == 1
    # another setting the model reads is another entry; a setting read after it is not in the key
    _, where = model_pass.photo_output(
        model_pass.MASKS, photos["a"], model, {**settings, "session": "x"}, load, cache=tmp_path
    )
    assert load.calls == 2 and where.startswith("computed in a batch of 1 ")
    assert "threshold" not in settings


def test_a_photos_output_is_the_same_alone_or_in_a_batch(photos, segmenter, tmp_path):
    settings, model = masks.model_settings(segmenter), [segmenter["rembg"]["model"]]
    load = lambda: masks.rembg_masker(segmenter)  # noqa: E731
    alone, _ = model_pass.photo_output(model_pass.MASKS, photos["a"], model, settings, load, cache=tmp_path / "1")
    batch = lambda: [photos["café c"], photos["b [2]"]]  # noqa: E731
    _, where = model_pass.photo_output(model_pass.MASKS, photos["a"], model, settings, load, batch, tmp_path / "3")
    assert where.startswith("computed in a batch of 3 ")
    alone_entries, batch_entries = entries(tmp_path / "1", model_pass.MASKS), entries(tmp_path / "3", model_pass.MASKS)
    assert alone_entries.items() <= batch_entries.items()  # the photo's entry: same name, same bytes
    in_batch, _ = model_pass.photo_output(model_pass.MASKS, photos["a"], model, settings, load, cache=tmp_path / "3")
    assert np.array_equal(alone, in_batch)
    config = {**segmenter, "method": "rembg", "threshold": 0.5, "fill_holes": True, "dilate_px": 2, "feather_px": 1.0}
    config["coverage_range"] = [0.0, 1.0]
    direct, _ = masks.make_mask(photos["a"], None, config)
    from_cache, _ = masks.make_mask(photos["a"], None, config, rembg_alpha=lambda: in_batch)
    assert np.array_equal(direct, from_cache)


def test_a_photo_that_its_ingest_job_is_rewriting_is_left_to_its_own_job(photos, segmenter, tmp_path):
    """Snakemake deletes an ingest job's old output before the job runs: a batch that listed that
    photo finds it gone and goes on without it (a race seen in CI), and a photo that is there is read
    once, so its key and its output come from the same bytes."""
    settings, model = masks.model_settings(segmenter), [segmenter["rembg"]["model"]]
    load = lambda: masks.rembg_masker(segmenter)  # noqa: E731
    others = lambda: [tmp_path / "being rewritten.png", photos["b [2]"]]  # noqa: E731
    _, where = model_pass.photo_output(model_pass.MASKS, photos["a"], model, settings, load, others, tmp_path / "c")
    assert where == "computed in a batch of 2 photo(s), one model load"
    _, where = model_pass.photo_output(model_pass.MASKS, photos["b [2]"], model, settings, load, cache=tmp_path / "c")
    assert where == "from the cache"


def test_the_tagger_batch_gives_the_records_a_job_would(photos, tmp_path):
    folder = wd14_tagger(tmp_path / "tagger")
    config = {
        "tagger": "wd14",
        "wd14": {"folder": str(folder), "general_threshold": 0.35, "character_threshold": 0.85},
        "device": "cpu",
    }
    load = counting(lambda: tags.tagger_of(config))
    settings, files = tags.model_settings(config), tags.model_files(config)
    assert "device" not in settings  # where it runs is not what it says
    others = lambda: list(photos.values())  # noqa: E731
    for name, path in photos.items():
        record, _ = model_pass.photo_output(model_pass.TAGS, path, files, settings, load, others, tmp_path / "c")
        assert record == json.loads(json.dumps(tags.tag_image(path, config))), name
    assert load.calls == 1
    # a new tag list is a new model: the photo again (its hash is remembered by size and time)
    table = folder / "selected_tags.csv"
    table.write_text(table.read_text().replace("smile", "grin"))
    model_pass.photo_output(model_pass.TAGS, photos["a"], files, settings, load, cache=tmp_path / "c")
    assert load.calls == 2


def test_the_batch_is_the_kept_photos_ingested_so_far(tmp_path):
    (tmp_path / "images").mkdir()
    for i in ("a", "c"):
        (tmp_path / "images" / f"{i}.png").write_bytes(b"png")
    rows = "file\tid\tstatus\n" + "a.jpg\ta\tkept\nb.jpg\tb\tkept\nc.jpg\tc\tduplicate\n"
    assert model_pass.kept_ingested(tmp_path) == []  # no dedup table yet
    (tmp_path / "dedup.tsv").write_text(rows)
    assert model_pass.kept_ingested(tmp_path) == [tmp_path / "images" / "a.png"]  # b: not ingested yet


def test_the_device_setting_picks_cuda_only_where_onnxruntime_has_it(monkeypatch):
    import onnxruntime

    preloaded = []  # onnxruntime-gpu's preload of CUDA's libraries from the nvidia-* packages: CUDA only
    monkeypatch.setattr(onnxruntime, "preload_dlls", lambda: preloaded.append("cuda"), raising=False)
    assert devices.onnx_providers("cpu", "masks.device") == ["CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert devices.onnx_providers("auto", "masks.device") == ["CPUExecutionProvider"]
    with pytest.raises(ConfigError, match=r"captions.device: cuda, .* install envs/requirements-gpu.txt"):
        devices.onnx_providers("cuda", "captions.device")
    assert preloaded == []
    gpu = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: gpu)
    assert devices.onnx_providers("auto", "masks.device")[0] == ("CUDAExecutionProvider", {"device_id": 0})
    assert devices.onnx_providers("cuda:1", "masks.device")[0] == ("CUDAExecutionProvider", {"device_id": 1})
    assert preloaded == ["cuda", "cuda"]
