"""The synthetic lumbar MRI phantom: RSNA-format DICOM studies, labels, a SPIDER export and truth."""

from lumbar_core.synthetic.dataset import SynthError, generate
from lumbar_core.synthetic.profiles import PROFILES, PhantomProfile, get_profile

__all__ = ["PROFILES", "PhantomProfile", "SynthError", "generate", "get_profile"]
