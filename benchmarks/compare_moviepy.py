"""One-off comparison behind the README's moviepy note (needs `pip install moviepy`).

Usage: nwt-data demo -w demo-workspace && python benchmarks/compare_moviepy.py demo-workspace
"""

import os
import sys
import time

import numpy as np

os.environ["IMAGEIO_FFMPEG_EXE"] = __import__("imageio_ffmpeg").get_ffmpeg_exe()
import librosa
from moviepy import VideoFileClip
from moviepy.video.fx import Crop, Resize

from nwt_data.catalog import Catalog
from nwt_data.config import MaskConfig
from nwt_data.stages.mask import prepare_clip
from nwt_data.workspace import Workspace

librosa.feature.melspectrogram(y=np.zeros(24000, dtype="float32"), sr=24000)
ws = Workspace.open(sys.argv[1] if len(sys.argv) > 1 else "demo-workspace")
rows = Catalog(ws.catalog_path).clips("status='ok'")


def ours():
    for r in rows:
        prepare_clip(ws, r, MaskConfig(workers=1))


def mp():
    for r in rows:
        clip = VideoFileClip(str(ws.root / r["path"]))
        s = r["trim_start"] - r["clip_offset"]
        e = s + r["duration"]
        c = clip.subclipped(s, e).with_effects(
            [Crop(x1=r["crop_x"], y1=r["crop_y"], width=r["crop_w"], height=r["crop_h"]), Resize((224, 256))]
        )
        c.write_videofile(
            "/tmp/mp_out.mp4", fps=30, codec="libx264", preset="veryfast", audio=False, logger=None
        )
        clip.close()


for name, f in (("nwt single pass (mask+mel incl.)", ours), ("moviepy crop+resize+fps, no mask/mel", mp)):
    best = 1e9
    for _ in range(2):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    print(f"{name}: {best:.2f} s for {len(rows)} clips, {sum(r['duration'] for r in rows):.1f} s of video")
