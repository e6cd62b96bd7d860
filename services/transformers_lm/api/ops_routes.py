"""What operators and tools read: /health, /metrics, /openapi.json and /docs."""
from flask import Blueprint, jsonify

from ..service import service_limits
from .openapi import docs_page, openapi_document


def ops_blueprint(holder, metrics, settings) -> Blueprint:
    blueprint = Blueprint("ops", __name__)
    loading_limits = service_limits(settings)

    def spec() -> dict:
        """The document of what is accepted: until the model is loaded, within the settings' limits alone."""
        limits = holder.service.limits if holder.service is not None else loading_limits
        return openapi_document(settings.service_name, limits)

    @blueprint.get("/health")
    def health():
        service = holder.service
        if service is None:
            status = "error" if holder.error else "loading"
            return jsonify({"status": status, "error": holder.error or holder.loading_state()}), 503
        failure = service.engine.failure()
        body = {"status": "error" if failure else "ok", "error": failure, "model": service.loaded.name,
                "adapter": service.loaded.adapter, "window": service.loaded.window, **service.engine.describe()}
        return jsonify(body), 503 if failure else 200

    @blueprint.get("/metrics")
    def prometheus_metrics():
        data, content_type = metrics.render()
        return data, 200, {"Content-Type": content_type}

    @blueprint.get("/openapi.json")
    def openapi_json():
        return jsonify(spec())

    @blueprint.get("/docs")
    def api_docs():
        return docs_page(spec())

    return blueprint
