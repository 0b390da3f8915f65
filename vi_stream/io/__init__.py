"""Adapters: everything that touches files, sockets, cameras or databases."""
