from course_management.api.app import ENDPOINTS, openapi_document


def test_the_document_is_openapi_3_1_and_lists_every_route() -> None:
    doc = openapi_document()
    assert doc["openapi"].startswith("3.1")
    for endpoint in ENDPOINTS:
        assert endpoint.method.lower() in doc["paths"][endpoint.path]


def test_create_documents_its_body_and_errors() -> None:
    op = openapi_document()["paths"]["/api/v1/courses/create"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "CourseFields"
    )
    assert {"201", "401", "403", "413", "415", "422"} <= set(op["responses"])
    schemas = openapi_document()["components"]["schemas"]
    assert schemas["CourseFields"]["additionalProperties"] is False
    assert "ModuleInput" in schemas


def test_the_response_headers_statuses_and_media_types_are_documented() -> None:
    """Issue 24, item 8 (the fuzz run checks them against the live worker)."""
    paths = openapi_document()["paths"]

    def headers(path: str, method: str, status: str) -> dict:
        return paths[path][method]["responses"][status]["headers"]

    course = "/api/v1/courses/{courseId}"
    assert {"ETag", "Cache-Control", "X-Request-ID"} <= set(headers(course, "get", "200"))
    assert "ETag" in headers(course, "get", "304")
    assert {"ETag", "Cache-Control"} <= set(headers(course + "/modules", "get", "200"))
    assert {"Location", "ETag"} <= set(headers("/api/v1/courses/create", "post", "201"))
    assert "Location" in headers(course + "/enroll", "post", "201")
    assert headers(course + "/update", "put", "200")["ETag"]["required"] is True
    assert headers("/api/v1/courses", "get", "429")["Retry-After"]["required"] is True
    assert headers("/api/v1/courses", "get", "429")["RateLimit"]["required"] is True
    assert headers("/api/v1/courses", "get", "503")["Retry-After"]["required"] is True
    assert headers("/api/v1/courses", "get", "200")["RateLimit"]["required"] is False
    assert "413" in paths[course + "/enroll"]["post"]["responses"]
    assert "503" in paths[course + "/uploads"]["post"]["responses"]
    status = openapi_document()["components"]["schemas"]["Enrollment"]["properties"]["status"]
    assert status["enum"] == ["active", "completed", "cancelled", "waitlisted"]
    assets = paths["/docs/assets/{name}"]["get"]["responses"]["200"]["content"]
    assert set(assets) == {"text/css", "text/javascript", "image/png"}
