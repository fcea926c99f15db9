"""Read the text of the QR code in a PNG or JPEG file (what a phone camera would scan)."""

from pathlib import Path

import zxingcpp
from PIL import Image, UnidentifiedImageError

from authenticator.errors import AuthenticatorError


def decode_qr_image(path: Path) -> str:
    """Return the text of the single QR code in the image at ``path``."""
    try:
        with Image.open(path) as image:
            image.load()
            barcodes = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
    except FileNotFoundError:
        raise AuthenticatorError(f"no such file: {path}") from None
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        # (Pillow's DecompressionBombError, for an image claiming more pixels than it may
        # decode, is not an OSError.)
        raise AuthenticatorError(f"cannot read image {path}: {_reason(exc)}") from None
    texts = [b.text for b in barcodes if b.valid and b.text]
    if not texts:
        raise AuthenticatorError(f"no QR code found in {path}")
    if len(set(texts)) > 1:
        raise AuthenticatorError(f"{path} holds several QR codes; crop it to one")
    return texts[0]


def _reason(exc: Exception) -> str:
    """Why the image could not be read, without repeating its path ("[Errno 21] ...: 'PATH'")."""
    strerror = getattr(exc, "strerror", None)
    return strerror or str(exc)
