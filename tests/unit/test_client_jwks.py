"""What a private_key_jwt client may register as its keys (idp.oidc.client_assertion.public_jwks):
public, asymmetric signing keys, stored with their public members only."""
from __future__ import annotations

import json

import pytest
from joserfc.jwk import ECKey, OKPKey, RSAKey

from idp.oidc.client_assertion import MAX_KEYS, JwksRefused, public_jwks, thumbprints


def ec(kid: str | None = "k1") -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": kid} if kid else None, auto_kid=False)


def public(key, **members) -> dict:
    document = {**key.as_dict(private=False), **members}
    return {name: value for name, value in document.items() if value is not None}


def test_the_public_members_kid_alg_and_use_are_kept_and_nothing_else():
    key = ec()
    stored = public_jwks(json.dumps({"keys": [public(key, use="sig", alg="ES256", x5u="https://x.example",
                                                      extra="value")]}))
    assert stored == {"keys": [{"kty": "EC", "crv": "P-256", "x": key.as_dict()["x"], "y": key.as_dict()["y"],
                                "kid": "k1", "use": "sig", "alg": "ES256"}]}
    assert thumbprints(stored) == [key.thumbprint()]


def test_every_kind_of_signing_key_is_accepted_with_its_algorithms():
    keys = [public(ec("a"), alg="ES256"), public(ECKey.generate_key("P-384", parameters={"kid": "b"}), alg="ES384"),
            public(RSAKey.generate_key(2048, parameters={"kid": "c"}), alg="PS256"),
            public(OKPKey.generate_key("Ed25519", parameters={"kid": "d"}), alg="EdDSA"),
            public(ECKey.generate_key("P-521", parameters={"kid": "e"}))]
    assert len(public_jwks({"keys": keys})["keys"]) == 5


def test_one_public_key_in_pem_becomes_a_set_of_one_named_by_its_thumbprint():
    for key in (ec(None), RSAKey.generate_key(2048), OKPKey.generate_key("Ed25519")):
        stored = public_jwks(key.as_pem(private=False).decode())
        [entry] = stored["keys"]
        assert entry["kid"] == key.thumbprint() == thumbprints(stored)[0]
        assert {name: value for name, value in entry.items() if name != "kid"} == public(key, kid=None)


def test_one_jwk_alone_is_a_set_of_one():
    key = ec()
    assert public_jwks(json.dumps(public(key))) == public_jwks({"keys": [public(key)]})
    with pytest.raises(JwksRefused, match="private or symmetric"):
        public_jwks(key.as_dict(private=True))


def _small_rsa() -> dict:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return public(RSAKey.generate_key(1024))


def _small_rsa_pem() -> str:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return RSAKey.generate_key(1024).as_pem(private=False).decode()


REFUSED = {
    "not JSON": (lambda: "{keys", "not JSON"),
    "nested too deep": (lambda: "[" * 100000 + "]" * 100000, "not JSON"),  # (RecursionError)
    "not a JWK Set": (lambda: [public(ec())], '"keys" array'),
    "no keys": (lambda: {"keys": []}, '"keys" array'),
    "too many keys": (lambda: {"keys": [public(ec(str(i))) for i in range(MAX_KEYS + 1)]}, f"at most {MAX_KEYS}"),
    "a key that is not an object": (lambda: {"keys": ["EC"]}, "not a JSON object"),
    "a private key": (lambda: {"keys": [ec().as_dict(private=True)]}, "private or symmetric"),
    "a symmetric key": (lambda: {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}, "private or symmetric"),
    "an unknown kty": (lambda: {"keys": [{"kty": "XYZ"}]}, "kty"),
    "a small RSA key": (lambda: {"keys": [_small_rsa()]}, "at least 2048"),
    "an encryption key": (lambda: {"keys": [public(ec(), use="enc")]}, 'not "sig"'),
    "an HMAC algorithm": (lambda: {"keys": [public(ec(), alg="HS256")]}, "alg 'HS256'"),
    "an algorithm of another curve": (lambda: {"keys": [public(ec(), alg="ES384")]}, "cannot sign with"),
    "an algorithm of another key type": (lambda: {"keys": [public(ec(), alg="RS256")]}, "cannot sign with"),
    "an empty kid": (lambda: {"keys": [public(ec(), kid="")]}, "kid"),
    "two keys, no kids": (lambda: {"keys": [public(ec(None)), public(ec(None))]}, 'own "kid"'),
    "two keys, one kid": (lambda: {"keys": [public(ec("same")), public(ec("same"))]}, 'own "kid"'),
    "a broken point": (lambda: {"keys": [{"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}]}, "not a valid"),
    "a missing member": (lambda: {"keys": [{"kty": "RSA", "e": "AQAB"}]}, "not a valid"),
    "an X25519 key": (lambda: {"keys": [{"kty": "OKP", "crv": "X25519", "x": "AAAA"}]}, "curve"),
    "secp256k1": (lambda: {"keys": [{"kty": "EC", "crv": "secp256k1", "x": "AAAA", "y": "AAAA"}]}, "curve"),
    "a private key in PEM": (lambda: ec().as_pem(private=True).decode(), "private key"),
    "two keys in PEM": (lambda: (ec().as_pem(private=False) * 2).decode(), "several keys"),
    "a PEM that is no key": (lambda: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not an EC"),
    "a small RSA key in PEM": (lambda: _small_rsa_pem(), "at least 2048"),
}


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_a_jwks_that_cannot_be_registered_says_why(case):
    make, fragment = REFUSED[case]
    with pytest.raises(JwksRefused) as refused:
        public_jwks(make())
    assert fragment in str(refused.value)
