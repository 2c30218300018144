"""Real photos -> editable latents: face alignment, projection (W, then W+), pivotal tuning.

::

    from dragkit import load_model
    from dragkit.invert import InvertConfig, invert_photo, discriminator_for
    G = load_model("faces128")
    inv = invert_photo(G, "photo.jpg", InvertConfig(align=True, pti=True), D=discriminator_for("faces128"))
    print(inv.psnr, inv.warnings)
    s = inv.session()                      # a DragSession on the reconstruction
    save_inversion(inv, "edit.dragkit.json", model="faces128")   # session + tuned generator beside it

    from dragkit import DragSession        # or in one call, the session owning its tuned generator:
    s = DragSession.from_image(G, "photo.jpg", align=True, pti=True, progress=print, cancel=lambda: False)
    s.save("edit.dragkit.json")            # writes the tuned generator etc. beside it, every time
    s, info = load_inversion("edit.dragkit.json")   # reopen (drags and undo history intact)

Alignment needs the optional extra ``dragkit[faces]`` (dlib); so do the
face loss terms (they switch themselves off, with a warning, without it).
See docs/invert.md.
"""
from __future__ import annotations

from .align import ALIGNMENTS, Alignment, NoFaceError, align_face, alignment_for_model
from .edit import EditFiles, load_inversion, save_inversion, session_from_image
from .losses import LossWeights
from .photo import Photo, PhotoError, read_photo
from .pipeline import InvertConfig, Inversion, default_config, discriminator_for, invert_photo
from .project import InversionCancelled, Progress, ProjectConfig, project
from .pti import PTIConfig, pivotal_tuning

__all__ = [
    "ALIGNMENTS", "Alignment", "NoFaceError", "align_face", "alignment_for_model",
    "LossWeights", "Photo", "PhotoError", "read_photo",
    "InvertConfig", "Inversion", "default_config", "discriminator_for", "invert_photo",
    "InversionCancelled", "Progress", "ProjectConfig", "project", "PTIConfig", "pivotal_tuning",
    "save_inversion", "load_inversion", "session_from_image", "EditFiles",
]
