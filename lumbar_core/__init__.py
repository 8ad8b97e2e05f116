"""lumbar_core: grading lumbar spine degeneration from MRI (RSNA 2024 LSDC), one library for every stage."""

__version__ = "0.1.0"
