"""Frontends: lower a model description into the IR with the GraphBuilder."""
