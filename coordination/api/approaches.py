"""API: approaches (filled in by its feature)."""

from flask_smorest import Blueprint

blp = Blueprint("approaches", __name__, url_prefix="/api/v1", description="approaches")
