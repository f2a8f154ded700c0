"""API: flags (filled in by its feature)."""

from flask_smorest import Blueprint

blp = Blueprint("flags", __name__, url_prefix="/api/v1", description="flags")
