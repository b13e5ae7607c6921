"""Images from untrusted bytes: a whole PNG or JPEG within a pixel cap, kept as it came."""

from __future__ import annotations

import base64
import binascii
import io
import struct
import warnings

from PIL import Image, UnidentifiedImageError

from tailord.trainer.errors import DecodeError, one_line

MAX_PIXELS = 40_000_000  # a 48-megapixel photo is over: downscale before dropping it in
MAX_IMAGE_BYTES = 64 * 1024 * 1024
IMAGE_FORMATS = ("PNG", "JPEG")


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> bytes:
    """Check that ``data`` is a whole PNG or JPEG within the pixel cap; return it unchanged.

    Only Pillow's PNG and JPEG decoders are allowed, the size is checked from the header
    before any pixel is decoded, and the image is then decoded once so a truncated or
    corrupt file is refused here rather than in an update.
    """
    if not data:
        raise DecodeError("the image is empty; write the whole file, then move it into the inbox")
    try:
        with warnings.catch_warnings():
            # Pillow only warns below twice its own limit; a bomb is an error here.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise DecodeError(
                        f"the image is {width}x{height} = {width * height} pixels, over the cap "
                        f"of {max_pixels}; downscale it or raise [ingest] max_image_pixels"
                    )
                if width == 0 or height == 0:
                    raise DecodeError("the image has no pixels; save a non-empty image")
                image.verify()  # PNG: every chunk's CRC, through to the end marker
            with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
                image.load()  # every pixel decodes (verify() leaves the image unusable)
    except DecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecodeError(
            f"the image is a decompression bomb ({one_line(exc)}); send a smaller image"
        ) from exc
    except UnidentifiedImageError as exc:
        raise DecodeError(
            "the bytes are not a PNG or JPEG image; convert the image to PNG or JPEG"
        ) from exc
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, MemoryError) as exc:
        raise DecodeError(
            f"the image cannot be decoded ({one_line(exc)}); "
            "write the whole file, then move it into the inbox"
        ) from exc
    return data


def decode_base64_image(value: str, max_pixels: int = MAX_PIXELS) -> bytes:
    """An image sent as base64 (a JSON record's ``"image"``), checked as :func:`decode_image`."""
    # base64 is 4/3 of the bytes: refuse an oversized string before decoding it.
    if len(value) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise DecodeError(
            f"the base64 image is over {MAX_IMAGE_BYTES} bytes; shrink it or drop it as a file"
        )
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DecodeError(
            f'"image" is not valid base64 ({one_line(exc)}); encode the file bytes with base64'
        ) from exc
    return decode_image(raw, max_pixels)
