"""Photos as competitions ship them, decoded to the pixels a viewer shows: CMYK JPEGs, 16-bit,
float and palette images, RGBA, TIFF, WebP, EXIF-rotated phone photos, grey JPEGs among colour
ones, big JPEGs at reduced scale; an image past PIL's decompression-bomb limit is one line that
names it, not a traceback and not a photo silently dropped. Every image is made here with PIL."""

import struct
import time
import zlib
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from competitions import invasive
from kit.data.photos import decode
from kit.errors import KitError

SIZE = 32


def scene() -> Image.Image:
    """A 96 x 64 picture whose every turn and flip looks different: three coloured bands and a
    dark corner."""
    a = np.zeros((64, 96, 3), np.uint8)
    a[:, :48], a[:, 48:], a[:16] = (220, 30, 30), (30, 30, 220), (30, 200, 30)
    a[48:, 80:] = (10, 10, 10)
    return Image.fromarray(a)


def reference(tmp_path, channels=3) -> np.ndarray:
    scene().save(tmp_path / "reference.png")
    return decode(tmp_path / "reference.png", SIZE, channels).astype(int)


def grey16(im: Image.Image) -> Image.Image:
    """The grey picture at 16 bits, scaled to the full range as a 16-bit file stores it."""
    return Image.fromarray(np.asarray(im.convert("L")).astype(np.uint16) * 257)


def grey_float(im: Image.Image) -> Image.Image:
    return Image.fromarray((np.asarray(im.convert("L")) / 255).astype(np.float32))


SAVED = {  # name: (file, how to write it, channels compared, mean difference allowed)
    "CMYK JPEG": ("photo.jpg", lambda im, p: im.convert("CMYK").save(p, quality=95), 3, 3),
    "palette PNG": ("photo.png", lambda im, p: im.quantize(16).save(p), 3, 1),
    "RGBA PNG": ("photo.png", lambda im, p: im.convert("RGBA").save(p), 3, 0),
    "TIFF": ("photo.tif", lambda im, p: im.save(p, compression="tiff_lzw"), 3, 0),
    "WebP": ("photo.webp", lambda im, p: im.save(p, lossless=True), 3, 0),
    "upper-case JPG": ("PHOTO.JPG", lambda im, p: im.save(p, quality=95), 3, 3),
    "grey JPEG among colour": ("grey.jpg", lambda im, p: im.convert("L").save(p), "grey", 3),
    "16-bit PNG": ("deep.png", lambda im, p: grey16(im).save(p), "grey", 1),
    "16-bit TIFF": ("deep.tif", lambda im, p: grey16(im).save(p), "grey", 1),
    "float TIFF": ("float.tif", lambda im, p: grey_float(im).save(p), "grey", 1),
}


@pytest.mark.parametrize("kind", SAVED)
@pytest.mark.parametrize("channels", [3, 1])
def test_each_format_decodes_to_the_pixels_of_the_picture(tmp_path, kind, channels):
    name, write, compared, allowed = SAVED[kind]
    write(scene(), tmp_path / name)
    got = decode(tmp_path / name, SIZE, channels)
    if compared == "grey" and channels == 3:  # a grey file read in colour: grey in each channel
        want = np.repeat(reference(tmp_path, 1)[..., None], 3, axis=2)
    else:
        want = reference(tmp_path, channels)
    assert got is not None and got.shape == want.shape and got.dtype == np.uint8
    assert np.abs(got.astype(int) - want).mean() <= allowed


def test_a_dark_16_bit_photo_stays_as_dark_as_its_8_bit_copy(tmp_path):
    """Scaled by the file's depth, not stretched to its own brightest pixel (which made this
    one 4 times brighter than its 8-bit copy)."""
    dark = Image.fromarray((np.asarray(scene().convert("L")) // 4).astype(np.uint8))
    dark.save(tmp_path / "8.png")
    grey16(dark).save(tmp_path / "16.png")
    eight = decode(tmp_path / "8.png", SIZE, 1).astype(int)
    assert np.abs(decode(tmp_path / "16.png", SIZE, 1).astype(int) - eight).max() <= 1


def test_12_bit_values_in_a_16_bit_file_are_read_as_12_bits(tmp_path):
    """A 12-bit sensor's photo stored unscaled (0-4095) in a 16-bit file, as TIFFs often are."""
    grey = scene().convert("L")
    grey.save(tmp_path / "8.png")
    Image.fromarray(np.asarray(grey).astype(np.uint16) * 16).save(tmp_path / "12.tif")
    eight = decode(tmp_path / "8.png", SIZE, 1).astype(int)
    assert np.abs(decode(tmp_path / "12.tif", SIZE, 1).astype(int) - eight).max() <= 1


ORIENTATIONS = {  # EXIF orientation: how the stored pixels were turned from the upright picture
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_a_phone_photo_is_turned_upright_by_its_exif_orientation(tmp_path, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = scene().transpose(ORIENTATIONS[orientation])
    stored.save(tmp_path / "phone.jpg", quality=95, exif=exif)
    got = decode(tmp_path / "phone.jpg", SIZE, 3).astype(int)
    assert np.abs(got - reference(tmp_path)).mean() <= 3


def test_a_big_jpeg_is_decoded_at_reduced_scale(tmp_path):
    """A 6000 x 4000 photo among small ones: JPEG's draft mode decodes it at 1/8 scale."""
    scene().resize((6000, 4000)).save(tmp_path / "big.jpg", quality=90)
    start = time.perf_counter()
    got = decode(tmp_path / "big.jpg", SIZE, 3)
    fast = time.perf_counter() - start
    start = time.perf_counter()
    with Image.open(tmp_path / "big.jpg") as im:
        im.load()
    full = time.perf_counter() - start
    assert np.abs(got.astype(int) - reference(tmp_path)).mean() <= 3
    assert fast < full / 2


def claimed_size(path, width: int, height: int) -> None:
    """Rewrite a PNG's header to claim `width` x `height`: PIL reads the size before a pixel."""
    data = bytearray(path.read_bytes())
    body = b"IHDR" + struct.pack(">II", width, height) + data[24:29]
    data[12:33] = body + struct.pack(">I", zlib.crc32(body))
    path.write_bytes(bytes(data))


def test_an_image_past_the_decompression_bomb_limit_is_one_line_naming_it(tmp_path):
    path = tmp_path / "huge scan.png"
    scene().save(path)
    claimed_size(path, 20000, 20000)  # 400 million pixels
    with pytest.raises(KitError) as e:
        decode(path, SIZE, 3)
    said = str(e.value)
    assert said.splitlines() == [said] and str(path) in said and "20000 x 20000" in said
    assert "KIT_MAX_IMAGE_PIXELS" in said and "take it out of the folder" in said


def test_kit_max_image_pixels_moves_the_limit(tmp_path, monkeypatch):
    scene().save(tmp_path / "photo.png")  # 96 x 64 = 6,144 pixels
    monkeypatch.setenv("KIT_MAX_IMAGE_PIXELS", "6000")
    with pytest.raises(KitError, match="96 x 64 = 6,144 pixels \\(limit 6,000\\)"):
        decode(tmp_path / "photo.png", SIZE, 3)
    for allowed in ("6144", "0"):
        monkeypatch.setenv("KIT_MAX_IMAGE_PIXELS", allowed)
        assert decode(tmp_path / "photo.png", SIZE, 3) is not None
    monkeypatch.setenv("KIT_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(KitError, match="give a whole number of pixels"):
        decode(tmp_path / "photo.png", SIZE, 3)


def test_a_bomb_among_the_training_photos_stops_the_load_not_skipped(photos_copy, tmp_path):
    """Decoded by the cache's worker processes; the one line reaches the loader."""
    path = photos_copy / "train" / "5.jpg"
    Image.open(path).save(tmp_path / "5.png")
    claimed_size(tmp_path / "5.png", 30000, 20000)
    path.write_bytes((tmp_path / "5.png").read_bytes())  # a PNG named .jpg: PIL reads either
    with pytest.raises(KitError, match="5.jpg is 30000 x 20000"):
        invasive.load(photos_copy, replace(invasive.RECIPE, size=SIZE))
