"""Curation detectors: pure functions that judge clips (overlays, text, faces, speech) and describe a
dataset (splits, report). The stages call them; they do no catalog I/O of their own."""
