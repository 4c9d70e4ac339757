"""Standing attack suite, media containers: files with absurd headers, thousands of tracks, boxes
nested 20,000 deep and huge declared sizes get a clear error from the audio and video tools
quickly, never an internal error. FFmpeg's own probing limits (probesize, analyzeduration,
max_streams) are what bound the work; these tests keep it so. Never skipped on CI."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests import hostile_files
from tests.checks import assert_no_crash, call_once

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("name", sorted(hostile_files.media_samples()))
async def test_hostile_media_containers_are_clear_errors(root: Path, name: str):
    from servers.audio_enhanced.server import build as build_audio
    from servers.video_enhanced.server import build as build_video

    (root / name).write_bytes(hostile_files.media_samples()[name])
    for builder, tool, argument in ((build_audio, "audio_extract_metadata", "audio_path_or_url"),
                                    (build_video, "video_extract_keyframes", "video_path")):
        started = time.monotonic()
        result, text = await call_once(builder(), tool, {argument: name})
        assert_no_crash(text)
        assert result.is_error and time.monotonic() - started < 5, text
