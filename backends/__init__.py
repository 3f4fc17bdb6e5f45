"""Backends: consumers of an annotated graph (roofline, parallel, graphviz, reports, plots)."""
