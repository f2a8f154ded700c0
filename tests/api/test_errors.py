"""Error bodies follow the spec's shape and no request leaks a stack trace."""


def test_health_needs_no_token_and_reports_the_database(client):
    answer = client.get("/healthz")
    assert answer.status_code == 200
    assert answer.json == {"status": "ok", "database": "reachable"}


def test_missing_token_is_401_with_the_spec_error_shape(client):
    answer = client.get("/api/v1/sync-runs")
    assert answer.status_code == 401
    assert set(answer.json) == {"code", "status", "message", "errors"}
    assert answer.json["code"] == 401


def test_wrong_role_is_403(client, auth):
    answer = client.get("/api/v1/sync-runs", headers=auth("visitor"))
    assert answer.status_code == 403
    assert answer.json["status"] == "Forbidden"


def test_unknown_path_is_json_404(client):
    answer = client.get("/api/v1/no-such-thing")
    assert answer.status_code == 404
    assert answer.json["code"] == 404


def test_bad_query_parameter_is_422_with_field_errors(client, auth):
    answer = client.get("/api/v1/sync-runs?page=0", headers=auth("admin"))
    assert answer.status_code == 422
    assert "page" in answer.json["errors"]["query"]


def test_wrong_method_keeps_the_allow_header(client, auth):
    answer = client.delete("/api/v1/sync-runs", headers=auth("admin"))
    assert answer.status_code == 405
    assert "GET" in answer.headers["Allow"]


def test_openapi_document_is_served_and_names_bearer_auth(client):
    spec = client.get("/api/v1/openapi.json").json
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert "/api/v1/sync-runs" in spec["paths"]
