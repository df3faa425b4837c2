"""Media I/O: the one place that runs ffmpeg (`ffmpeg.py`) and reads containers (`probe.py`)."""
