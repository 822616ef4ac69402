"""SynthReID: reidkit's own generated dataset, in the exact Market-1501 layout."""
from __future__ import annotations


from .base import NamePattern
from .market1501 import MARKET_EXAMPLE, MARKET_REGEX, MarketLayout

SYNTH_PATTERN = NamePattern(MARKET_REGEX, MARKET_EXAMPLE, pid_range=(0, 9999), cam_range=(1, 6))


class SynthReID(MarketLayout):
    """SynthReID, the offline dataset rendered by ``reidkit synth`` (no download, byte-identical per seed).

    It mirrors Market-1501 (Zheng et al., "Scalable Person Re-identification: A Benchmark", ICCV 2015)
    so that every code path of the real benchmark runs on it. Folder anatomy::

        synthreid_tiny_s0/        (the --out folder of ``reidkit synth --preset tiny --out ...``)
          bounding_box_train/     PPPP_cCsS_FFFFFF_BB.jpg
          query/
          bounding_box_test/      may hold -1_... junk and 0000_... distractors like Market
          synthreid.json          manifest: preset, seed, generator version, counts, identity attributes

    Naming rule (basename only): exactly Market's, ``PPPP_cCsS_FFFFFF_BB.jpg``, pid of 4 digits (0..9999),
    camera C in 1..6. Parsing, junk and distractor handling are Market's; the name is ``"synthreid"``
    and the sizes are never checked against Market's. The generator is
    :func:`reidkit.data.synthetic.generate_synthreid` (cached: :func:`~reidkit.data.synthetic.ensure_synthreid`).
    """

    name = "synthreid"
    title = "SynthReID"
    anatomy = """
synthreid_<preset>_s<seed>/   (written by: reidkit synth --preset tiny --out data/synthreid_tiny_s0)
  bounding_box_train/         PPPP_cCsS_FFFFFF_BB.jpg, e.g. 0002_c1s1_000451_03.jpg, cameras 1-6
  query/                      same naming
  bounding_box_test/          same naming; -1_... junk, 0000_... distractors
"""
    distractor_pid = 0
    pattern = SYNTH_PATTERN
