"""SynthReID: a procedural pedestrian dataset in the exact Market-1501 layout, rendered offline.

``generate_synthreid(out, preset, seed)`` writes a dataset; ``ensure_synthreid(preset, seed)`` returns
a cached one (generating it once); :data:`PRESETS` lists the sizes (``tiny``, ``small``, ``market``).
Same seed, same bytes, whatever the number of workers. Module map:

* ``identity`` -- attributes of a person (clothes, bag, hair, body) and confusable identities;
* ``render`` -- drawing a person in a viewpoint and walking pose;
* ``scene`` -- cameras (scene, colour cast, blur, noise), backgrounds, clutter and occluders;
* ``compose`` -- one crop (person, distractor or junk) from its random stream, as JPEG;
* ``plan`` -- splits, cameras, queries and file names; ``presets`` -- the sizes;
* ``generate`` -- writing, manifest, summary and the cache; ``sheet`` -- pictures for notebooks.
"""
from .generate import (
    GENERATOR_VERSION,
    MANIFEST,
    SynthReIDSummary,
    default_data_root,
    ensure_synthreid,
    generate_synthreid,
    read_manifest,
)
from .identity import Identity
from .presets import PRESETS, SynthPreset
from .render import VIEWS
from .sheet import dataset_identities, render_identity_sheet

__all__ = [
    "GENERATOR_VERSION",
    "MANIFEST",
    "PRESETS",
    "VIEWS",
    "Identity",
    "SynthPreset",
    "SynthReIDSummary",
    "dataset_identities",
    "default_data_root",
    "ensure_synthreid",
    "generate_synthreid",
    "read_manifest",
    "render_identity_sheet",
]
