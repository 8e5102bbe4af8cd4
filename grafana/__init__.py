"""Grafana dashboard (generated from code), Prometheus SLO recording and alert rules."""
