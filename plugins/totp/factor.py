"""TOTP authenticator apps (RFC 6238): the factor plugin.

Enrolment keeps a fresh seed sealed in the login state, shows it as a QR code, a
grouped key and an `otpauth://` link, and stores the credential only after a
correct code. A login code is accepted at most once per credential: the matched
time step must move the credential's counter forward in one conditional UPDATE.
"""
from __future__ import annotations

import base64
import hmac
import os
from urllib.parse import urlsplit

import pyotp
import segno
from flask_babel import lazy_gettext as _l

from idp.factors import (
    Description, Enrolled, Factor, FactorKind, FactorMisconfigured, Rejected, Step, Verified, default_label,
    display_text, label_too_long,
)

from idp_plugins.totp import otp

# The label of a credential `idp factor totp import` made without --label: stored so (the command
# line, `idp user show`), shown translated (TotpFactor.own_labels).
IMPORTED_LABEL = "Imported authenticator"


def b32(secret: bytes) -> str:
    return base64.b32encode(secret).decode().rstrip("=")


def grouped(key: str) -> str:
    """"JBSW Y3DP EHPK 3PXP": easier to type by hand than one long run."""
    return " ".join(key[i:i + 4] for i in range(0, len(key), 4))


class TotpFactor(Factor):
    name = "totp"
    label = _l("Authenticator app")
    own_labels = {IMPORTED_LABEL: _l("Imported authenticator")}  # `idp factor totp import` without --label
    kind = FactorKind.SECOND_FACTOR
    # RFC 8176 "otp": a one-time password. Not "swk": the seed is a shared secret, not a key proven by signature.
    amr = ("otp",)
    allow_multiple = True
    user_enrollable = True
    begins_quietly = True  # begin_challenge only reads the credentials' digits

    def __init__(self, store, challenges, settings=None) -> None:
        super().__init__(store, challenges, settings)
        # Checked as the app starts (the registry builds factors then), not at the first
        # enrolment: a bad digits/algorithm is one configuration line, never a 500 later.
        self._params()

    def _params(self) -> tuple[int, str]:
        digits = self.settings.get("digits", 6)
        algorithm = str(self.settings.get("algorithm", "SHA1")).upper()
        if digits not in otp.DIGITS or algorithm not in otp.ALGORITHMS:
            raise FactorMisconfigured(f"factors.totp.digits must be 6 or 8 and factors.totp.algorithm one of "
                                      f"{', '.join(otp.ALGORITHMS)} (got {digits!r}, {algorithm!r})")
        return digits, algorithm

    def issuer_label(self, issuer_url: str) -> str:
        return str(self.settings.get("issuer_label") or urlsplit(issuer_url).hostname or "IdP")

    # --- enrolment -----------------------------------------------------------------------

    def begin_enrolment(self, user, ctx):
        digits, algorithm = self._params()
        secret = os.urandom(otp.SECRET_BYTES[algorithm])
        key = b32(secret)
        issuer = self.issuer_label(ctx.issuer)
        uri = pyotp.TOTP(key, digits=digits, digest=otp.ALGORITHMS[algorithm], interval=otp.PERIOD).provisioning_uri(
            name=user.email or user.username, issuer_name=issuer)
        view = {"qr_svg": segno.make(uri, error="m").svg_inline(scale=5, dark="#000", light="#fff", omitsize=True),
                "uri": uri, "key": grouped(key), "issuer": issuer, "account": user.email or user.username,
                "digits": digits, "algorithm": algorithm, "period": otp.PERIOD}
        state = {"secret": self.store.seal_pending(user, secret), "digits": digits, "algorithm": algorithm}
        return Step(state=state, view=view)

    def finish_enrolment(self, user, state, response, ctx):
        secret = self.store.open_pending(user, state.get("secret"))
        digits, algorithm = state.get("digits"), state.get("algorithm")
        if secret is None or digits not in otp.DIGITS or algorithm not in otp.ALGORITHMS:
            return Rejected("expired", counts_as_failure=False)
        # Display text first: a name of nothing but invisible characters is no name (the default one).
        # Checked before the code, which stays unspent for the form sent again with a shorter name.
        label = display_text(str(response.get("label") or ""))
        too_long = label_too_long(label)
        if too_long:
            return Rejected("label_too_long", counts_as_failure=False, message=too_long)
        step = otp.verify_totp(secret, response.get("code"), ctx.now, -1, digits, algorithm)
        if step is None:
            return Rejected("invalid_code")
        label = label or self._next_label(user)
        credential = self.store.create(user, label=label, secret=secret, counter=step, now=ctx.now,
                                       public={"digits": digits, "algorithm": algorithm, "period": otp.PERIOD})
        return Enrolled(credential)

    def _next_label(self, user) -> str:
        return default_label(self, self.store.count(user) + 1)

    # --- login ---------------------------------------------------------------------------

    def begin_challenge(self, user, ctx):
        digits = max((c.public.get("digits", 6) for c in self.store.list(user)), default=6)
        return Step(state={}, view={"digits": digits})

    def verify(self, user, state, response, ctx):
        code = response.get("code")
        for credential, secret in self.store.reveal_all(user):
            digits = credential.public.get("digits", 6)
            algorithm = credential.public.get("algorithm", "SHA1")
            step = otp.verify_totp(secret, code, ctx.now, credential.counter, digits, algorithm)
            if step is None:
                continue
            # The database decides: only one request moves the counter to this step.
            if step <= credential.counter or not self.store.advance_counter(credential.id, step, now=ctx.now):
                return Rejected("replayed")
            return Verified(credential.id, self.amr)
        return Rejected("invalid_code")

    # --- import (`idp factor totp import`, `idp user import`) ----------------------------

    IMPORT_FIELDS = frozenset({"secret", "label", "algorithm", "digits", "period"})

    def parse_import(self, item):
        """`{"secret": BASE32, "label", "algorithm": SHA1|SHA256|SHA512, "digits": 6|8, "period": 30}`
        -> what `import_credential` stores; ValueError saying what is wrong."""
        if not isinstance(item, dict):
            raise ValueError('a TOTP credential must be an object such as {"secret": "JBSWY3DP..."}')
        unknown = sorted(set(item) - self.IMPORT_FIELDS)
        if unknown:
            raise ValueError(f"unknown TOTP field(s) {', '.join(unknown)} (known: {', '.join(sorted(self.IMPORT_FIELDS))})")
        secret_text = item.get("secret")
        if not isinstance(secret_text, str):
            raise ValueError("the TOTP secret must be a base32 string")
        secret = otp.parse_secret(secret_text, empty="the TOTP secret is empty")
        label = item.get("label", "")
        # Control and format characters refused (display_text would drop them), not every character
        # str.isprintable calls unprintable: a no-break space or an ideographic space is text.
        if not isinstance(label, str) or len(label.strip()) > 200 or display_text(label) != label.strip():
            raise ValueError("the TOTP label must be a string of at most 200 characters, without control characters")
        digits, algorithm, period = item.get("digits", 6), item.get("algorithm", "SHA1"), item.get("period", otp.PERIOD)
        if type(digits) is not int or digits not in otp.DIGITS:  # (not True, which is 1)
            raise ValueError(f"TOTP digits must be 6 or 8 (got {digits!r})")
        if not isinstance(algorithm, str) or algorithm.upper() not in otp.ALGORITHMS:
            raise ValueError(f"TOTP algorithm must be one of {', '.join(otp.ALGORITHMS)} (got {algorithm!r})")
        if type(period) is not int or period != otp.PERIOD:
            raise ValueError(f"TOTP period must be {otp.PERIOD} seconds, the only one this provider checks (got {period!r})")
        return {"secret": secret, "label": label.strip(), "digits": digits, "algorithm": algorithm.upper()}

    def import_credential(self, user, prepared):
        # The same seed twice is one authenticator counted as two (and, from `idp factor totp
        # import`, a second notice mail). The seeds are sealed at rest: compared opened, in
        # constant time, as codes are checked.
        for existing, seed in self.store.reveal_all(user):
            if hmac.compare_digest(seed, prepared["secret"]):
                raise ValueError(f"{user.email} already has this secret (TOTP credential {existing.id}, "
                                 f"{existing.label!r})")
        return self.store.create(user, label=prepared["label"] or IMPORTED_LABEL, secret=prepared["secret"],
                                 public={"digits": prepared["digits"], "algorithm": prepared["algorithm"],
                                         "period": otp.PERIOD, "imported": True})

    def describe(self, credential):
        return Description(id=credential.id, factor=self.name, label=self.shown_label(credential),
                           created_at=credential.created_at, last_used_at=credential.last_used_at,
                           facts={"digits": credential.public.get("digits", 6),
                                  "algorithm": credential.public.get("algorithm", "SHA1")})

    @classmethod
    def cli_command(cls):
        from idp_plugins.totp.cli import totp_group

        return totp_group
