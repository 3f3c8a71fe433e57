"""Rewriting what an upstream says about its own URLs into the route's public ones."""
