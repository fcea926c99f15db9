"""The user's security page (issue 4)."""
from flask import Blueprint

bp = Blueprint("account", __name__, url_prefix="/account")
