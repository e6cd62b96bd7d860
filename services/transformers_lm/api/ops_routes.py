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
            return jsonify({"status": status, "error": holder.error}), 503
        if not service.engine.alive:
            return jsonify({"status": "error", "error": "the inference thread stopped"}), 503
        return jsonify({"status": "ok", "model": service.loaded.name, "adapter": service.loaded.adapter,
                        "device": str(service.loaded.device),
                        "window": service.loaded.window, **service.loaded.precision.describe(),
                        "batching": service.engine.stats})

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
