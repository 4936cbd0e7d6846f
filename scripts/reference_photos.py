"""Rule reference_photos: what the validation samples are compared with, from the kept photos of the
training split (face descriptors, perceptual hashes of their framings, sharpness at the validation
samples' size, highlights on the subject)."""

from pathlib import Path

from PIL import Image
from tqdm import tqdm

from charlora import logs, sample_metrics, split

log = logs.setup(snakemake.log[0])
sides = split.read_table(snakemake.input.split)
paths = [Path(p) for p in snakemake.input.images if sides.get(Path(p).stem) == "train"]
photos = []
for path in tqdm(paths, desc="training photos", unit="photo"):
    with Image.open(path) as im:
        photos.append(
            sample_metrics.describe_photo(
                path.stem, im.convert("RGB"), snakemake.params.min_face, snakemake.params.sample_side
            )
        )
reference = sample_metrics.Reference(photos, snakemake.params.min_face)
sample_metrics.write_reference(Path(snakemake.output[0]), reference)
log.info(
    "%d training photos, %d with a face of %d px or more",
    len(photos),
    len(reference.face_descriptors),
    snakemake.params.min_face,
)
