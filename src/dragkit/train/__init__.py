"""Training StyleGAN2 generators, and the procedural toy world.

* :mod:`dragkit.train.loop` - the trainer (``dragkit train``): :class:`~dragkit.train.loop.Trainer`,
  :func:`~dragkit.train.loop.make_config`, presets ``toy``, ``toy64``, ``faces128``, ``tiny``.
* :mod:`dragkit.train.dataset` - image zips/folders (``--data-range``) and the on-the-fly toy world.
* :mod:`dragkit.train.augment` - DiffAugment (translation, cutout, colour).
* :mod:`dragkit.train.checkpoint` - atomic, resumable training checkpoints.
* :mod:`dragkit.train.export` - G_ema in the native format, D beside it.
* :mod:`dragkit.train.toy` - the toy world (a disk and a bar) and its oracle
  :func:`~dragkit.train.toy.measure`.

Submodules are imported on demand; importing :mod:`dragkit.train` is cheap.
"""
