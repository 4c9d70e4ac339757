"""The suite's one image decoder: type from the bytes, EXIF read and orientation applied, the first
frame of animations, a decompression-bomb guard, and downscaled copies for models and OCR."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from shared import settings
from shared.errors import InputError, NotConfigured
from shared.inputs import LocalInput

MAX_PIXELS = 80_000_000  # about 9,000 x 9,000; larger images are refused before decoding
_HEIF_MIMES = {"image/heic", "image/heif", "image/avif"}


@dataclass
class LoadedImage:
    label: str
    mime: str  # from the bytes
    format: str
    width: int  # after EXIF orientation
    height: int
    size_bytes: int
    frames: int
    image: Any  # PIL RGB image, oriented
    exif: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def scaled(self, max_side: int) -> Any:
        """A copy whose longer side is at most `max_side` pixels."""
        picture = self.image
        if max(picture.size) <= max_side:
            return picture
        ratio = max_side / max(picture.size)
        from PIL import Image

        return picture.resize((max(1, round(picture.width * ratio)), max(1, round(picture.height * ratio))),
                              Image.Resampling.LANCZOS)

    def encoded(self, max_side: int) -> tuple[bytes, str, int, int]:
        """JPEG (photos) or PNG (few colours, e.g. screenshots) bytes for a model: (data, mime, w, h)."""
        picture = self.scaled(max_side)
        buffer = io.BytesIO()
        colours = picture.getcolors(maxcolors=4096)
        if colours is not None:  # screenshots, diagrams: lossless keeps text sharp
            picture.save(buffer, format="PNG", optimize=True)
            mime = "image/png"
        else:
            picture.save(buffer, format="JPEG", quality=82)
            mime = "image/jpeg"
        return buffer.getvalue(), mime, picture.width, picture.height


def model_max_side() -> int:
    return int(settings.number("TOOLSUITE_VISION_MAX_SIDE", 1568, minimum=256))


def _register_heif() -> bool:
    try:
        from pillow_heif import register_heif_opener
    except ModuleNotFoundError:
        return False
    register_heif_opener()
    return True


def _gps_degrees(value: Any, ref: Any) -> float | None:
    try:
        degrees, minutes, seconds = (float(part) for part in value)
    except (TypeError, ValueError):
        return None
    result = degrees + minutes / 60 + seconds / 3600
    return -result if str(ref).upper() in ("S", "W") else result


def read_exif(picture: Any) -> dict[str, Any]:
    from PIL import ExifTags

    raw = picture.getexif()
    if not raw:
        return {}
    exif: dict[str, Any] = {}
    for key, value in raw.items():
        name = ExifTags.TAGS.get(key, str(key))
        if isinstance(value, bytes) or name in ("MakerNote", "UserComment", "ExifOffset", "GPSInfo"):
            continue
        exif[name] = value if isinstance(value, int | float) else str(value)[:200]
    try:
        details = raw.get_ifd(ExifTags.IFD.Exif)
        for key, value in details.items():
            name = ExifTags.TAGS.get(key, str(key))
            if name in ("DateTimeOriginal", "LensModel", "FNumber", "ExposureTime", "ISOSpeedRatings", "FocalLength"):
                exif[name] = value if isinstance(value, int | str) else str(value)
        gps = raw.get_ifd(ExifTags.IFD.GPSInfo)
        if gps:
            latitude = _gps_degrees(gps.get(2), gps.get(1))
            longitude = _gps_degrees(gps.get(4), gps.get(3))
            if latitude is not None and longitude is not None:
                exif["GPSLatitude"] = round(latitude, 6)
                exif["GPSLongitude"] = round(longitude, 6)
    except (KeyError, AttributeError, ValueError):
        pass
    return exif


def decode(item: LocalInput) -> LoadedImage:
    """The image in an opened input, oriented, first frame only, refused past `MAX_PIXELS`."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    mime = item.file_type.mime
    if not mime.startswith("image/"):
        raise InputError(f"{item.label!r} is not an image: its bytes are {mime}")
    if mime in _HEIF_MIMES and not _register_heif():
        raise NotConfigured(f"{item.label!r} is {mime}; reading it needs pillow-heif (pip install pillow-heif)")
    notes: list[str] = []
    try:
        with Image.open(item.path) as opened:
            if opened.width * opened.height > MAX_PIXELS:
                raise Image.DecompressionBombError("too many pixels")
            frames = int(getattr(opened, "n_frames", 1) or 1)
            if frames > 1:
                opened.seek(0)
                notes.append(f"animated image with {frames} frames: the first frame is used")
            exif = read_exif(opened)
            opened.load()
            oriented = ImageOps.exif_transpose(opened) or opened
            rgb = oriented.convert("RGB")
            file_format = opened.format or item.file_type.extension.upper()
    except Image.DecompressionBombError:
        raise InputError(f"{item.label!r} is too large to decode safely: over {MAX_PIXELS // 1_000_000} "
                         "megapixels (decompression bomb guard)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        # Pillow's own message names the file it opened (a temporary path for URLs and data: URIs).
        raise InputError(f"{item.label!r} cannot be decoded as an image ({type(exc).__name__}); the file may be "
                         "truncated or damaged") from None
    if exif.get("Orientation", 1) not in (1, None):
        notes.append(f"EXIF orientation {exif['Orientation']} applied")
    return LoadedImage(label=item.label, mime=mime, format=file_format, width=rgb.width, height=rgb.height,
                       size_bytes=item.size, frames=frames, image=rgb, exif=exif, notes=notes)
