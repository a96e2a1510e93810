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
