"""Sizes of the SynthReID datasets: ``tiny`` (tests, CI notebooks), ``small`` (the demo), ``market`` (benchmark scale)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: Market1501's parser accepts pids 0..1501, so a SynthReID dataset never has more identities.
MAX_IDS = 1501


@dataclass(frozen=True)
class SynthPreset:
    """How big a SynthReID dataset is and how its images are spread over cameras.

    * ``num_train_ids`` / ``num_test_ids`` -- disjoint identity sets, pids shuffled over ``1..N``;
    * ``camera_weights`` -- probabilities that an identity is seen by ``2, 3, ..., num_cameras`` cameras;
    * ``train_images_per_camera`` -- inclusive range of a training identity's images in one camera;
    * ``test_images_per_camera`` -- the same for test identities, query included (at least 2, so that
      after taking one query per camera every camera keeps a gallery image);
    * ``single_camera_fraction`` -- test identities seen by one camera only (gallery only, no query);
    * ``num_distractors`` (pid ``0000``) and ``num_junk`` (pid ``-1``) -- extra ``bounding_box_test`` images;
    * ``confusable_fraction`` -- identities that copy another one of their split but for 1-2 attributes.
    """

    name: str
    num_train_ids: int
    num_test_ids: int
    train_images_per_camera: tuple[int, int]
    test_images_per_camera: tuple[int, int]
    num_distractors: int
    num_junk: int
    single_camera_fraction: float = 0.05
    camera_weights: tuple[float, ...] = (0.10, 0.15, 0.20, 0.25, 0.30)
    num_cameras: int = 6
    confusable_fraction: float = 0.3
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        problems = []
        if self.num_train_ids < 2 or self.num_test_ids < 2:
            problems.append("num_train_ids and num_test_ids must be at least 2")
        if self.num_train_ids + self.num_test_ids > MAX_IDS:
            problems.append(f"at most {MAX_IDS} identities in all (Market-1501's pid range)")
        if not 2 <= self.num_cameras <= 6:
            problems.append("num_cameras must be in 2..6 (Market-1501 file names)")
        if len(self.camera_weights) != self.num_cameras - 1 or min(self.camera_weights) < 0:
            problems.append(f"camera_weights needs {self.num_cameras - 1} non-negative weights (2..{self.num_cameras} cameras)")
        lo, hi = self.train_images_per_camera
        if not 1 <= lo <= hi:
            problems.append("train_images_per_camera must be (lo, hi) with 1 <= lo <= hi")
        lo, hi = self.test_images_per_camera
        if not 2 <= lo <= hi:
            problems.append("test_images_per_camera must be (lo, hi) with 2 <= lo <= hi (query + gallery)")
        if not 0 <= self.single_camera_fraction < 1 or not 0 <= self.confusable_fraction < 1:
            problems.append("single_camera_fraction and confusable_fraction must be in [0, 1)")
        if self.num_distractors < 0 or self.num_junk < 0:
            problems.append("num_distractors and num_junk must be >= 0")
        if problems:
            raise ValueError(f"SynthPreset {self.name!r}: " + "; ".join(problems))

    @property
    def num_single_camera(self) -> int:
        """Number of test identities seen by one camera only."""
        return int(round(self.single_camera_fraction * self.num_test_ids))

    def image_bounds(self) -> dict[str, tuple[int, int]]:
        """Smallest and largest possible image counts per split (``gallery`` counts distractors, not junk)."""
        single, multi = self.num_single_camera, self.num_test_ids - self.num_single_camera
        cams = [k + 2 for k, w in enumerate(self.camera_weights) if w > 0]
        c_lo, c_hi = min(cams), max(cams)
        t_lo, t_hi = self.train_images_per_camera
        g_lo, g_hi = self.test_images_per_camera
        return {
            "train": (self.num_train_ids * c_lo * t_lo, self.num_train_ids * c_hi * t_hi),
            "query": (multi * c_lo, multi * c_hi),
            "gallery": (multi * c_lo * (g_lo - 1) + single + self.num_distractors,
                        multi * c_hi * (g_hi - 1) + single * g_hi + self.num_distractors),
        }

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict of every field (for the manifest)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out


PRESETS: dict[str, SynthPreset] = {
    "tiny": SynthPreset(
        name="tiny", num_train_ids=40, num_test_ids=30, train_images_per_camera=(1, 3),
        test_images_per_camera=(2, 3), num_distractors=30, num_junk=15, single_camera_fraction=0.07,
        description="tests and CI notebooks: ~750 images, a few seconds on one core",
    ),
    "small": SynthPreset(
        name="small", num_train_ids=150, num_test_ids=100, train_images_per_camera=(1, 5),
        test_images_per_camera=(2, 5), num_distractors=250, num_junk=120, single_camera_fraction=0.05,
        description="the demo: ~4,000 images",
    ),
    "market": SynthPreset(
        name="market", num_train_ids=751, num_test_ids=750, train_images_per_camera=(1, 7),
        test_images_per_camera=(2, 8), num_distractors=2798, num_junk=3819, single_camera_fraction=0.03,
        description="Market-1501 sizes: 751/750 ids, ~33,000 images incl. distractors and junk",
    ),
}
