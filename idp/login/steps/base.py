"""What every step receives: the transaction, its browser handle, and a render helper."""
from __future__ import annotations

from dataclasses import dataclass

from flask import render_template, url_for

from idp.login.transaction import TransactionRow


@dataclass
class StepContext:
    row: TransactionRow
    handle: str

    @property
    def params(self) -> dict:
        return self.row.authz_request["params"]

    @property
    def client_name(self) -> str:
        return self.row.authz_request.get("client_name", "")

    def render(self, template, status: int = 200, **values):
        values.setdefault("action", url_for("login.step", handle=self.handle))
        values.setdefault("version", self.row.version)
        values.setdefault("client_name", self.client_name)
        values.setdefault("handle", self.handle)
        return render_template(template, **values), status
