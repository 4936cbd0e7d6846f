"""Rule mask: the subject mask of one kept photo and its record (source, coverage, flags)."""

import os
from functools import partial
from pathlib import Path

from PIL import Image

from charlora import atomic, command_line, logs, masks, model_pass

args = command_line.parse_args(
    __doc__, ["image", "mask", "record"], settings=["masks", "strict"], optional_files=["user-mask"]
)
log = logs.setup(args.log)
config = {**args.masks, "device": model_pass.environment_device("masks")}  # device: not a rerun trigger


def rembg_alpha():
    """rembg's output for this photo: from the cache, or a batch over the kept photos rembg masks."""
    user_masks = Path(os.environ.get("CHARLORA_USER_MASKS", "/nonexistent"))

    def others():  # the kept photos without a mask of the user's
        return [p for p in model_pass.kept_ingested() if not (user_masks / p.name).is_file()]

    load = partial(masks.rembg_masker, config)
    model_files = [config["rembg"]["model"]]
    alpha, where = model_pass.photo_output(
        model_pass.MASKS, args.image, model_files, masks.model_settings(config), load, others
    )
    log.info("%s: rembg's mask %s", args.id, where)
    return alpha


mask, record = masks.make_mask(args.image, args.user_mask, config, args.strict, rembg_alpha)
log.info("%s: %s mask, %.0f%% subject", args.id, record["source"], 100 * record["coverage"])
for flag in record["flags"]:
    log.warning("%s: %s", args.id, flag)
atomic.save_image(Image.fromarray(mask, "L"), args.mask)
atomic.write_json(args.record, record)
