"""API: companies (filled in by its feature)."""

from flask_smorest import Blueprint

blp = Blueprint("companies", __name__, url_prefix="/api/v1", description="companies")
