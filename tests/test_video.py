"""Video through a real server: files, animations, frame folders, broken inputs and streams."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image, ImageSequence
from server_fixtures import photo, start_server

from robust_style.cli import main
from robust_style.errors import UserError
from robust_style.server.app import StyleServer
from robust_style.server.client import StyleClient
from robust_style.video import VideoJob, open_source, stylize_video

W, H, FPS, N = 96, 64, Fraction(24), 12


def moving_frames(n: int = N, w: int = W, h: int = H) -> list[np.ndarray]:
    """A real photo panning by 3 px a frame."""
    big = photo("astronaut", side=w + 3 * n + 8)
    return [np.ascontiguousarray(big[4:4 + h, 3 * i:3 * i + w]) for i in range(n)]


def make_clip(path: Path, n: int = N, audio: bool = True) -> Path:
    """H.264 at 24 fps with a 440 Hz sine AAC track, written with PyAV."""
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=FPS)
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        a = out.add_stream("aac", rate=16000, layout="mono") if audio else None
        for i, img in enumerate(moving_frames(n)):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            for p in v.encode(f):
                out.mux(p)
        for p in v.encode():
            out.mux(p)
        if a is not None:
            t = np.arange(int(16000 * n / FPS)) / 16000
            wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for k in range(0, len(wave), 1024):
                af = av.AudioFrame.from_ndarray(wave[None, k:k + 1024], format="fltp",
                                                layout="mono")
                af.sample_rate, af.pts = 16000, k
                for p in a.encode(af):
                    out.mux(p)
            for p in a.encode():
                out.mux(p)
    return path


def probe(path: Path) -> dict[str, object]:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        fps, size = v.average_rate, (v.width, v.height)
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        audio = [bytes(p) for s in c.streams.audio for p in c.demux(s) if p.size]
        codec = c.streams.audio[0].codec_context.name if c.streams.audio else None
    return {"frames": frames, "fps": fps, "size": size,
            "audio": audio, "audio_codec": codec}


def test_video_round_trip_keeps_frames_size_rate_and_audio(server: StyleServer,
                                                          tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4")
    out = tmp_path / "out" / "styled.mp4"
    assert main(["stylize", str(clip), "--style", "tiny", "--server", server.address,
                 "-o", str(out)]) == 0
    src, dst = probe(clip), probe(out)
    assert len(dst["frames"]) == len(src["frames"]) == N
    assert dst["size"] == (W, H) and dst["fps"] == FPS
    assert dst["audio_codec"] == "aac" and dst["audio"] == src["audio"]  # copied, bit for bit
    # Stylised: the frames differ from the input's, and follow the motion (not one frame).
    a, b = np.stack(src["frames"]).astype(float), np.stack(dst["frames"]).astype(float)
    assert np.abs(a - b).mean() > 10
    assert np.abs(b[0] - b[-1]).mean() > 5
    assert not list(tmp_path.glob("out/.*tmp*"))  # no temporary file left


def test_max_side_and_output_folder_naming(server: StyleServer, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mkv", n=4, audio=False)
    assert main(["stylize", str(clip), "--style", "tiny", "--server", server.address,
                 "-o", str(tmp_path / "o"), "--max-side", "48"]) == 0
    dst = probe(tmp_path / "o" / "clip_tiny.mkv")
    assert dst["size"] == (48, 32) and len(dst["frames"]) == 4 and dst["audio"] == []


def test_gif_in_gif_and_webp_out(server: StyleServer, tmp_path: Path) -> None:
    frames = [Image.fromarray(f) for f in moving_frames(6)]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=80, loop=0)
    for name in ("out.gif", "out.webp"):
        out = tmp_path / name
        assert main(["stylize", str(gif), "--style", "tiny", "--server", server.address,
                     "-o", str(out)]) == 0
        with Image.open(out) as im:
            assert im.n_frames == 6 and im.size == (W, H)
            durations = []
            for f in ImageSequence.Iterator(im):
                f.load()
                durations.append(f.info.get("duration"))
            assert durations == [80] * 6
            im.seek(0)
            first = np.asarray(im.convert("RGB"))
        assert np.abs(first.astype(float) - np.asarray(frames[0].convert("RGB"))).mean() > 10


def test_folder_of_frames_to_video_at_given_rate(server: StyleServer, tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(moving_frames(5)):  # frame2 sorts before frame10
        Image.fromarray(f).save(folder / f"frame{i * 5}.png")
    out = tmp_path / "from_frames.mp4"
    assert main(["stylize", str(folder), "--style", "tiny", "--server", server.address,
                 "-o", str(out), "--fps", "10"]) == 0
    dst = probe(out)
    assert len(dst["frames"]) == 5 and dst["fps"] == 10
    # ... and back to a folder of frames.
    assert main(["stylize", str(out), "--style", "tiny", "--server", server.address,
                 "-o", str(tmp_path / "f"), "--frames"]) == 0
    assert len(list((tmp_path / "f" / "from_frames_tiny").glob("frame_*.png"))) == 5


def test_truncated_and_unreadable_files_are_one_line_errors(
        server: StyleServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clip = make_clip(tmp_path / "clip.mp4")
    data = clip.read_bytes()
    bad = tmp_path / "truncated.mp4"
    bad.write_bytes(data[: len(data) // 2])
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    for path in (bad, text):
        out = tmp_path / f"out_{path.stem}.mp4"
        capsys.readouterr()
        assert main(["stylize", str(path), "--style", "tiny", "--server", server.address,
                     "-o", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert str(path) in err and len(err.splitlines()) == 1 and "Traceback" not in err
        assert not out.exists()


def test_output_never_overwrites_the_input(server: StyleServer, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    clip = make_clip(tmp_path / "clip.mp4", n=3)
    before = clip.read_bytes()
    assert main(["stylize", str(clip), "--style", "tiny", "--server", server.address,
                 "-o", str(clip)]) == 2
    assert "is the input" in capsys.readouterr().err
    assert clip.read_bytes() == before


class _StopsServerAfter:
    """The real client; after ``k`` answers the real server is shut down mid-stream."""

    def __init__(self, client: StyleClient, srv: StyleServer, k: int) -> None:
        self.client, self.server, self.k = client, srv, k

    def stylize_frames(self, frames: Iterator[np.ndarray], style: str,
                       **kw: object) -> Iterator[np.ndarray]:
        for i, out in enumerate(self.client.stylize_frames(frames, style, **kw)):  # type: ignore[arg-type]
            yield out
            if i + 1 == self.k:
                self.server.stop(0)


def test_stream_broken_mid_way_leaves_a_playable_file(models_dir: Path,
                                                      tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", n=40)
    srv = start_server(models_dir)
    out = tmp_path / "partial.mp4"
    try:
        with StyleClient(srv.address, timeout=30) as client, \
                pytest.raises(UserError) as info:
            stylize_video(_StopsServerAfter(client, srv, 5), VideoJob(clip, out, "tiny"),
                          progress=False)
    finally:
        srv.stop(0)
    msg = str(info.value)
    written = int(msg.split("stopped at frame ")[1].split(" ")[0])
    assert 5 <= written < 40 and str(clip) in msg and "plays" in msg
    dst = probe(out)  # a complete container: the trailer is there, it decodes
    assert len(dst["frames"]) == written and dst["fps"] == FPS
    assert dst["audio_codec"] == "aac" and 0 < len(dst["audio"]) < len(probe(clip)["audio"])


def test_client_iterator_api_and_early_close(server: StyleServer) -> None:
    frames = moving_frames(8)
    with StyleClient(server.address) as client:
        outs = list(client.stylize_frames(iter(frames), "tiny"))
        assert len(outs) == 8 and all(o.shape == (H, W, 3) and o.dtype == np.uint8
                                      for o in outs)
        it = client.stylize_frames(iter(frames * 50), "tiny")
        next(it)
        it.close()  # cancels the stream; the server keeps serving
        again = list(client.stylize_frames(iter(frames[:2]), "tiny", max_side=48))
        assert [o.shape for o in again] == [(32, 48, 3)] * 2
        with pytest.raises(UserError, match="uint8"):
            list(client.stylize_frames(iter([frames[0].astype(np.float32)]), "tiny"))


def test_sources_read_what_was_written(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", n=6)
    src = open_source(clip)
    try:
        got = list(src)
    finally:
        src.close()
    assert src.info.width == W and src.info.fps == FPS and src.info.audio_codec == "aac"
    assert [f.index for f in got] == list(range(6))
    assert got[1].time == pytest.approx(1 / 24)


def test_video_path_is_torch_free() -> None:
    import subprocess
    import sys

    code = ("import sys, robust_style.video, robust_style.cli.stylize_video, "
            "robust_style.server.client; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip() == "[]"
