"""A client's id never begins with "-" (idp.clients.new_client_id): `idp client show -dzG...`
read such an id as an option, which made a test fail about once in 65 runs."""
from __future__ import annotations


def test_an_id_drawn_with_a_leading_dash_is_drawn_again(monkeypatch):
    from idp import clients

    draws = iter(["-dzGitFuBZIZmWcozjPMDJAa", "_fine-id", "unused"])
    monkeypatch.setattr(clients, "random_token", lambda _nbytes: next(draws))
    assert clients.new_client_id() == "_fine-id"


def test_ids_are_24_url_safe_characters():
    from idp import clients

    ids = {clients.new_client_id() for _ in range(200)}
    assert len(ids) == 200 and all(len(i) == 24 and not i.startswith("-") for i in ids)
