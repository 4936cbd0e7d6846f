"""charlora: the library behind the workflow. Rule scripts in ../ are thin wrappers around it.

One flat package, one module per concern, grouped here the way rules/ is grouped. It stays flat
on purpose: a third of the modules serve every stage (model I/O, the run plan, atomic writes),
so stage packages would still need a common one, and every import would grow a level. A module
used by one stage only carries the stage's name (train_data, lora_verify) or is listed under it.

rules/dataset.smk   dataset (listing), images (reading, EXIF, fingerprints), audit, framing, dedup,
                    near_duplicates (the geometric check), stale (files of photos no longer kept), split,
                    report, onetrainer (the export); demo, demo_render (the demo's photos), miniature
                    (the world the demo's base is pretrained on by tools/pretrain_miniature.py: no rule)
rules/masks.smk     masks; model_pass (one model load for many photos, the cache by content: also
                    captions'), devices (CPU or GPU for rembg and the taggers: also captions')
rules/captions.smk  tags, captions, tokenizer (prompt lengths)
rules/train.smk     train (the loop), train_data (encoding, cache, batches), train_state (resume),
                    distributed (DDP processes), diffusion (noise, loss), optim, ema, buckets,
                    disk_space (will the run fit), run_cost (what the whole run writes: `snakemake cost`)
rules/validate.smk  sample (SDXL pipeline, PNG parameters), comfyui (each sample as a ComfyUI workflow),
                    validate_prompts, intent (also the report's coverage table), loss_trend (smoothing,
                    noise, minimum, knee, slope of the losses),
                    refinement (which epochs around the selection's start), validate_plots, sample_metrics
                    (what is measured on a sample), faces (identity), scorecard (levels, review files),
                    selection (signs, ranking, steps: the selected epoch), pixel_probe (what a sample of
                    the demo's world shows, read from its pixels)
rules/lora.smk      lora (extraction), lora_verify
rules/runs.smk      run_record (run.yaml, the table of runs)
every stage         plan (blocks, saved epochs, paths: also read by rules/common.smk), triggers (which
                    settings rerun which jobs: one table, read by the rules), config (schema,
                    defaults, path checks), model_files (the models a config names: `snakemake
                    models` and the check at the start of a run), sdxl (model I/O), ldm_layout (checkpoint key names),
                    atomic (temp file, then rename), hashing, logs, summary (the end of a run),
                    command_line (the per-photo scripts' arguments)
"""
