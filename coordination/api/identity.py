"""API: identity (filled in by its feature)."""

from flask_smorest import Blueprint

blp = Blueprint("identity", __name__, url_prefix="/api/v1", description="identity")
