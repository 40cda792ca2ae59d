"""KADID-10k-style synthetic distortions: turn any folder of pristine images into a
labelled IQA dataset whose samples group into one meta-learning task per distortion type.

    from perceptiq.data.synthetic import synthesize, get_distortion
    csv_path = synthesize("photos/", "synthetic/", types=["jpeg", "gaussian_blur"], seed=0)
    blurred = get_distortion("gaussian_blur")(img, 3, np.random.default_rng(0))  # img: (H, W, 3) float32

See docs/synthetic.md for the types, their strengths per level and the label.
"""

from .catalogue import DistortionType, get_distortion, list_distortions
from .generate import CSV_HEADER, GENERATOR_VERSION, LABELS_FILE, MANIFEST_FILE, synthesize
from .label import DEFAULT_LABEL, LabelDefinition, ReferenceSSIM, pseudo_mos
from .tasks import distortion_tasks

__all__ = [
    "CSV_HEADER",
    "DEFAULT_LABEL",
    "GENERATOR_VERSION",
    "LABELS_FILE",
    "MANIFEST_FILE",
    "DistortionType",
    "LabelDefinition",
    "ReferenceSSIM",
    "distortion_tasks",
    "get_distortion",
    "list_distortions",
    "pseudo_mos",
    "synthesize",
]
