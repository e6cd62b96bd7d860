"""Formatters the Dream agent (dp-agent) imports by the names in assistant_dists/*/pipeline_conf.json."""
