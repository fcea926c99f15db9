"""`add IMAGE` with images Pillow opens but zxing-cpp cannot take as they are, and with damaged files.

The contract holds for any file a user (or whoever sent it) names: the text of the QR code, or one
line on stderr. Damaged TIFFs are the hard case: Pillow warns about them with Python warnings, and
the libtiff inside it prints its own warnings on file descriptor 2.
"""

import io
import struct

import pytest
import segno
from PIL import Image

from authenticator_testkit import one_line_error

URI = "otpauth://totp/ACME:erin?secret=JBSWY3DPEHPK3PXP"


def qr_grey() -> Image.Image:
    buffer = io.BytesIO()
    segno.make(URI, error="m").save(buffer, kind="png", scale=3)
    buffer.seek(0)
    return Image.open(buffer).convert("L")


def tiff_bytes(image: Image.Image, **options) -> bytearray:
    buffer = io.BytesIO()
    image.save(buffer, "TIFF", **options)
    return bytearray(buffer.getvalue())


def ifd_entries(tiff: bytearray):
    """(offset of the entry, tag, count, value) of each entry of a little-endian TIFF's first IFD."""
    assert tiff[:2] == b"II"
    (ifd,) = struct.unpack_from("<I", tiff, 4)
    (count,) = struct.unpack_from("<H", tiff, ifd)
    for index in range(count):
        offset = ifd + 2 + 12 * index
        tag, _type, values, value = struct.unpack_from("<HHII", tiff, offset)
        yield offset, tag, values, value


def with_tag_beyond_the_file(tiff: bytearray, tag: int) -> bytearray:
    """``tag`` claims 1000 values stored past the end of the file (Pillow: "Tag data larger than file")."""
    for offset, found, _values, _value in ifd_entries(tiff):
        if found == tag:
            struct.pack_into("<II", tiff, offset + 4, 1000, len(tiff) - 10)
    return tiff


def with_damaged_strip(tiff: bytearray) -> bytearray:
    """LZW image data overwritten in the middle (libtiff: "Using code not yet in table")."""
    entries = {tag: value for _offset, tag, _values, value in ifd_entries(tiff)}
    middle = entries[273] + entries[279] // 2  # StripOffsets, StripByteCounts
    tiff[middle:middle + 16] = b"\xff" * 16
    return tiff


def test_a_lab_tiff_is_decoded(app, tmp_path):
    """zxing-cpp refuses LAB images (TypeError: no buffer protocol), and Pillow cannot convert LAB to
    grey: the lightness band is the grey image."""
    grey = qr_grey()
    neutral = Image.new("L", grey.size, 128)
    path = tmp_path / "lab.tif"
    Image.merge("LAB", (grey, neutral, neutral)).save(path)
    result = app.run("add", str(path))
    assert result.returncode == 0 and not result.stderr, result.stderr
    assert result.stdout.startswith("added ACME:erin")


@pytest.mark.parametrize("mode", ["1", "P", "RGBA", "CMYK", "I;16", "F", "LA"])
def test_other_modes_are_decoded(app, tmp_path, mode):
    grey = qr_grey()
    image = grey.convert("I").convert("I;16") if mode == "I;16" else grey.convert(mode)
    path = tmp_path / f"qr-{mode.replace(';', '')}.tif"
    image.save(path)
    result = app.run("add", str(path))
    assert result.returncode == 0 and not result.stderr, (mode, result.stderr)


def test_a_tiff_pillow_warns_about_still_decodes_without_a_word_on_stderr(app, tmp_path):
    path = tmp_path / "warns.tif"
    path.write_bytes(with_tag_beyond_the_file(tiff_bytes(qr_grey()), 284))  # PlanarConfiguration: not needed
    result = app.run("add", str(path))
    assert result.returncode == 0 and result.stderr == "", result.stderr


@pytest.mark.parametrize("damage", [
    lambda: with_tag_beyond_the_file(tiff_bytes(qr_grey()), 258),  # BitsPerSample: Python UserWarning
    lambda: with_damaged_strip(tiff_bytes(qr_grey(), compression="tiff_lzw")),  # libtiff, on descriptor 2
], ids=["pillow-warning", "libtiff-warning"])
def test_a_damaged_tiff_is_one_line_and_nothing_else(app, tmp_path, damage):
    path = tmp_path / "damaged.tif"
    path.write_bytes(damage())
    result = app.run("add", str(path))
    line = one_line_error(result)
    assert line.startswith(f"idp-authenticator: cannot read image {path}: ") and result.returncode == 1
    assert app.files() == {}


def test_the_app_s_own_stderr_works_after_an_image_was_read(app, tmp_path):
    """Descriptor 2 is silenced only while the file is decoded: later warnings still reach the user."""
    cloud = tmp_path / "cloud"
    app.ok("add", "otpauth://totp/Other:zed?secret=JBSWY3DPEHPK3PXP")
    app.ok("backup", "--enable", "--to", str(cloud))
    cloud.rename(tmp_path / "unmounted")
    path = tmp_path / "lab.tif"
    grey = qr_grey()
    Image.merge("LAB", (grey, Image.new("L", grey.size, 128), Image.new("L", grey.size, 128))).save(path)
    result = app.run("add", str(path))
    assert result.returncode == 0 and "warning: automatic backup failed" in result.stderr
