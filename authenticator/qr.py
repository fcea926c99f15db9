"""Read the text of the QR code in a PNG or JPEG file (what a phone camera would scan).

Any file may be named here, damaged or hostile ones included, so decoding it must end in
the text or in one line: Pillow raises more than OSError on a damaged file (ValueError,
SyntaxError, TypeError, ...), warns about damaged TIFF tags with Python warnings, and the
libtiff bundled with it writes its own warnings straight to file descriptor 2. All of that
is kept off the user's stderr, and the message never repeats an argument that looks like a
URI (a pasted ``otpauth://`` link holds the account's secret).
"""

import contextlib
import os
import re
import struct
import sys
import warnings
from pathlib import Path
from typing import Iterator

import zxingcpp
from PIL import Image

from authenticator.errors import AuthenticatorError

# What Pillow and zxing-cpp raise for a file they cannot make sense of. (Pillow's
# DecompressionBombError, for an image claiming more pixels than it may decode, is not an
# OSError; UnidentifiedImageError is one.)
_UNREADABLE = (OSError, ValueError, TypeError, SyntaxError, EOFError, IndexError, KeyError, ZeroDivisionError,
               struct.error, MemoryError, Image.DecompressionBombError)

# The largest image decoded, in pixels: a 48-megapixel phone photo fits; Pillow itself only warns from
# about 89 million (a warning silenced with the decoder's noise), and a PNG of 0.7 MB can hold 169
# million pixels, 1.2 GB once decoded (an audit measured it): refused before decoding instead.
MAX_PIXELS = 64_000_000
# An otpauth: or idp-...: URI, however mangled (a leading space, one slash lost): not echoed.
_LOOKS_LIKE_URI = re.compile(r"^\s*(otpauth|idp-[a-z]+)\s*:", re.IGNORECASE)


def decode_qr_image(path: Path) -> str:
    """Return the text of the single QR code in the image at ``path``."""
    name = _named(path)
    try:
        with _quiet(), Image.open(path) as image:
            width, height = image.size  # read from the header, before anything is decoded
            if width * height > MAX_PIXELS:
                raise AuthenticatorError(f"cannot read image {name}: {width}x{height} pixels, more than the "
                                         f"{MAX_PIXELS // 1_000_000} million a QR code photo needs")
            image.load()
            barcodes = zxingcpp.read_barcodes(_grey(image), formats=zxingcpp.BarcodeFormat.QRCode)
    except FileNotFoundError:
        if _LOOKS_LIKE_URI.match(str(path)):
            raise AuthenticatorError(f"no such file, and not a whole URI either: {name}; give the URI as copied, "
                                     "starting with its scheme (otpauth://, idp-push://)") from None
        raise AuthenticatorError(f"no such file: {name}") from None
    except _UNREADABLE as exc:
        raise AuthenticatorError(f"cannot read image {name}: {_reason(exc)}") from None
    texts = [b.text for b in barcodes if b.valid and b.text]
    if not texts:
        raise AuthenticatorError(f"no QR code found in {name}")
    if len(set(texts)) > 1:
        raise AuthenticatorError(f"{name} holds several QR codes; crop it to one")
    return texts[0]


def _grey(image: Image.Image) -> Image.Image:
    """The image as 8-bit grey ("L"), the one input zxing-cpp takes from every Pillow mode.

    Pillow cannot convert LAB to "L", but LAB's first band is its lightness. A mode that converts to
    neither (La) raises ValueError: an image this app cannot read."""
    if image.mode == "LAB":
        return image.getchannel(0)
    return image.convert("L")


def _named(path) -> str:
    """``path`` for a message, unless it looks like a URI pasted with a flaw: then it is not repeated."""
    text = str(path)
    return "the argument (not repeated here: it may hold a secret)" if _LOOKS_LIKE_URI.match(text) else text


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Python warnings ignored and file descriptor 2 pointed at /dev/null while a file is decoded.

    The app's own one-line error is printed after this returns. Without a descriptor 2 to save
    (stderr closed), only the Python warnings are silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.suppress(AttributeError, OSError, ValueError):  # no sys.stderr, or a closed one
            sys.stderr.flush()
        saved = _duplicate(2)
        if saved is None:
            yield
            return
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, 2)
            finally:
                os.close(null)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _duplicate(fd: int):
    try:
        return os.dup(fd)
    except OSError:
        return None


def _reason(exc: Exception) -> str:
    """Why the image could not be read, without repeating its path ("[Errno 21] ...: 'PATH'")."""
    strerror = getattr(exc, "strerror", None)
    return strerror or _without_path(str(exc)) or type(exc).__name__


def _without_path(message: str) -> str:
    """Pillow's "cannot identify image file 'PATH'" names the file, which the message already does
    (or must not: see _named)."""
    return re.sub(r"\s*'[^']*'$", "", message) if message.startswith("cannot identify image file") else message
