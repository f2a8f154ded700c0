"""API: admin (filled in by its feature)."""

from flask_smorest import Blueprint

blp = Blueprint("admin", __name__, url_prefix="/api/v1", description="admin")
