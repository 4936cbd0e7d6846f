"""Rule tag: auto-tags of one kept photo, with scores."""

from functools import partial

from charlora import atomic, command_line, logs, model_pass, tags

args = command_line.parse_args(__doc__, ["image", "record"], settings=["captions"])
log = logs.setup(args.log)
config = {**args.captions, "device": model_pass.environment_device("captions")}  # device: not a rerun trigger
if config["tagger"] in ("wd14", "vlm"):  # a model: from the cache, or a batch over the kept photos
    load = partial(tags.tagger_of, config)
    files = tags.model_files(config)
    record, where = model_pass.photo_output(
        model_pass.TAGS, args.image, files, tags.model_settings(config), load, model_pass.kept_ingested
    )
    log.info("%s: tags %s", args.id, where)
else:
    record = tags.tag_image(args.image, config)
log.info("%s: %d tags (%s)", args.id, len(record["tags"]), record["backend"])
atomic.write_json(args.record, record)
